"""`python -m benchmarks.compare BASE HEAD`: did a headline ratio get worse between two commits?

Reads the interleaved headline ratios (`bench_headline.Ratios`: the median of 7 paired ratios
and its quartiles) that asv recorded for the commits BASE and HEAD (hashes or prefixes) on one
machine, and prints every row measured at both. A row is worse when cakejax's side got slower
against its baseline (the ratio moved the row's `slower` way) by more than `--threshold`
(default 10 %) **and** significantly: HEAD's interquartile range lies wholly beyond BASE's, so
that the change is larger than what either run's own spread allows. It exits 1 naming those
rows, 0 when there are none, 2 when a commit has no results. With `--agreement` it checks two
runs for agreement instead: it names the rows that differ by more than the threshold either
way without being noise-limited (an interquartile range wider than 10 % of the median) in
either run.

Run the two commits' headline suites first, on one machine, e.g.:

    asv run --python=same --machine cpu-2core-dev --launch-method forkserver \\
        --set-commit-hash $(git rev-parse HEAD) --bench bench_headline
    python -m benchmarks.compare 86d42cd HEAD
"""

import argparse
import ast
import json
import math
import pathlib
import subprocess
import sys

from .headline import INTERLEAVED, NOISY, ROOT, TIMED


def _commit(ref: str) -> str:
    """`ref` as a full hash where git knows it (HEAD, a branch, a prefix), else as given."""
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or ref


def ratios(results: pathlib.Path, machine: str, commit: str) -> dict:
    """(row, backend) -> (median, q1, q3) of the newest run of `commit` on `machine` that
    recorded the headline ratios."""
    runs = []
    for path in (results / machine).glob("*.json"):
        if path.name == "machine.json":
            continue
        run = json.loads(path.read_text())
        if run.get("commit_hash", "").startswith(commit) and INTERLEAVED[0] in run.get(
            "results", {}
        ):
            runs.append(run)
    if not runs:
        return {}
    run = max(runs, key=lambda r: r["date"])
    columns = run["result_columns"]
    values = {}
    for name in INTERLEAVED:
        entry = run["results"].get(name)
        if entry is None:
            return {}
        rows, backends = entry[columns.index("params")]
        flat = entry[columns.index("result")] or []
        for i, value in enumerate(flat):
            # asv stores each parameter as its repr.
            key = (
                ast.literal_eval(rows[i // len(backends)]),
                ast.literal_eval(backends[i % len(backends)]),
            )
            if value is not None and not math.isnan(value):  # NaN: asv's "skipped"
                values.setdefault(key, []).append(value)
    return {key: tuple(v) for key, v in values.items() if len(v) == 3}


def worse(base: tuple, head: tuple, slower: str, threshold: float) -> bool:
    """Whether `head`'s (median, q1, q3) is worse than `base`'s: beyond `threshold` and with
    the interquartile ranges apart, in the direction `slower`."""
    (b, b1, b3), (h, h1, h3) = base, head
    if slower == "up":
        return h > (1 + threshold) * b and h1 > b3
    return h < b / (1 + threshold) and h3 < b1


def disagree(base: tuple, head: tuple, threshold: float) -> bool:
    """Whether two runs of one row differ by more than `threshold` either way while neither
    is noise-limited (an interquartile range wider than `NOISY` of its median)."""
    (b, b1, b3), (h, h1, h3) = base, head
    noisy = (b3 - b1) / b > NOISY or (h3 - h1) / h > NOISY
    return not noisy and abs(h / b - 1) > threshold


def compare(
    base: dict, head: dict, threshold: float, agreement: bool = False
) -> tuple[list[str], list[str]]:
    """The report's lines and the labels of the rows that got worse (with `agreement`: that
    differ either way and are not noise-limited)."""
    lines, bad = [], []
    for row in TIMED:
        for backend in ("cpu", "gpu"):
            key = (row.label, backend)
            if key not in base or key not in head:
                continue
            if agreement:
                flag = disagree(base[key], head[key], threshold)
            else:
                flag = worse(base[key], head[key], row.slower, threshold)
            (b, b1, b3), (h, h1, h3) = base[key], head[key]
            word = ("DIFFERS" if agreement else "WORSE") if flag else "ok"
            lines.append(
                f"{word:7}  {b:7.3f} ({b1:.3f}-{b3:.3f}) -> "
                f"{h:7.3f} ({h1:.3f}-{h3:.3f})  {h / b:5.2f}x  [{backend}] {row.label}"
            )
            if flag:
                bad.append(f"[{backend}] {row.label}")
    return lines, bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("head")
    parser.add_argument("--machine", default="cpu-2core-dev")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / ".asv" / "results")
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="check that two runs agree: every row within the threshold either way, or "
        "noise-limited in one of them",
    )
    args = parser.parse_args(argv)
    found = {}
    for ref in (args.base, args.head):
        found[ref] = ratios(args.results, args.machine, _commit(ref))
        if not found[ref]:
            print(
                f"no headline ratios for {ref!r} on {args.machine!r} in {args.results}: "
                "run `asv run ... --bench bench_headline` at that commit first",
                file=sys.stderr,
            )
            return 2
    lines, bad = compare(found[args.base], found[args.head], args.threshold, args.agreement)
    print("\n".join(lines))
    if bad and args.agreement:
        print(
            f"\n{len(bad)} row(s) differ by more than {args.threshold:.0%} and are not "
            "noise-limited:\n  " + "\n  ".join(bad)
        )
        return 1
    if bad:
        print(
            f"\n{len(bad)} row(s) worse by more than {args.threshold:.0%}, beyond both runs' "
            "interquartile ranges:\n  " + "\n  ".join(bad)
        )
        return 1
    print(
        f"\nno row {'differs' if args.agreement else 'worse'} by more than "
        f"{args.threshold:.0%}" + ("" if args.agreement else " with significance")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

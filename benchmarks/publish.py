"""`python -m benchmarks.publish`: `asv publish`, then make the dashboard self-contained.

asv's pages load jQuery, flot, Bootstrap, blueimp-md5 and stupidtable from CDNs when they are
viewed, so on a machine without internet (many GPU clusters) the dashboard is an error page.
This step fetches those scripts once, at publish time, from the npm registry (`npm pack`, which
checks each tarball against the registry's integrity hash), copies them under `vendor/` in the
published folder and points the pages at the copies. The result needs nothing but a static file
server: `python -m http.server -d .asv/html`.

The versions are asv's own (asv 0.6), except stupidtable: the registry has 1.1.3 (the CDN's
1.0.1 was never published there), which keeps the same `stupidtable()` API.
"""

import argparse
import base64
import hashlib
import io
import itertools
import json
import math
import pathlib
import re
import shutil
import subprocess
import tarfile
import tempfile


ROOT = pathlib.Path(__file__).resolve().parents[1]

#: CDN address (a regular expression over the pages' src/href values) -> (npm package spec,
#: path of the file inside the package).
VENDORED = {
    r"https://code\.jquery\.com/jquery-3\.3\.1\.min\.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    r"https://cdn\.jsdelivr\.net/npm/bootstrap@3\.1\.1/dist/css/bootstrap\.min\.css": (
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
    ),
    r"https://cdn\.jsdelivr\.net/npm/bootstrap@3\.1\.1/dist/js/bootstrap\.min\.js": (
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.min\.js": (
        "flot@0.8.3",
        "jquery.flot.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.time\.min\.js": (
        "flot@0.8.3",
        "jquery.flot.time.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.selection\.min\.js": (
        "flot@0.8.3",
        "jquery.flot.selection.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.categories\.min\.js": (
        "flot@0.8.3",
        "jquery.flot.categories.js",
    ),
    r"https://cdn\.jsdelivr\.net/npm/flot-orderbars@1\.0\.0/js/jquery\.flot\.orderBars\.js": (
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/blueimp-md5/2\.19\.0/js/md5\.min\.js": (
        "blueimp-md5@2.19.0",
        "js/md5.min.js",
    ),
    r"https://cdnjs\.cloudflare\.com/ajax/libs/stupidtable/1\.0\.1/stupidtable\.min\.js": (
        "stupid-table-plugin@1.1.3",
        "stupidtable.min.js",
    ),
}

#: Folders a vendored file needs beside it (Bootstrap's stylesheet loads its fonts).
ALSO = {"bootstrap@3.1.1": ["dist/fonts"]}

_EXTERNAL = re.compile(r"""(?:src|href)=["'](https?://[^"']+\.(?:js|css))["']""")


def _unpack(spec: str, into: pathlib.Path) -> pathlib.Path:
    """The npm package `spec`, fetched with `npm pack` and unpacked; returns its folder."""
    work = pathlib.Path(tempfile.mkdtemp(dir=into))
    subprocess.run(
        ["npm", "pack", spec, "--silent"], cwd=work, check=True, capture_output=True, text=True
    )
    (tarball,) = work.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(work, filter="data")
    return work / "package"


def vendor(html: pathlib.Path) -> list[str]:
    """Copies every script and stylesheet the pages load from a CDN under `html/vendor/` and
    rewrites the pages to load the copies. Returns the addresses replaced; raises if a page
    loads an address this table does not know (a newer asv), so the result is never silently
    half-online."""
    pages = sorted(html.glob("*.html"))
    if not pages:
        raise SystemExit(f"no published pages in {html}: run `asv publish` first")
    found = {url for page in pages for url in _EXTERNAL.findall(page.read_text())}
    unknown = sorted(u for u in found if not any(re.fullmatch(p, u) for p in VENDORED))
    if unknown:
        raise SystemExit(f"pages load addresses with no vendored copy: {unknown}")
    local: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        packages: dict[str, pathlib.Path] = {}
        for pattern, (spec, path) in VENDORED.items():
            url = next((u for u in found if re.fullmatch(pattern, u)), None)
            if url is None:
                continue
            if spec not in packages:
                packages[spec] = _unpack(spec, pathlib.Path(scratch))
            target = html / "vendor" / spec.replace("@", "-")
            for part in [path, *ALSO.get(spec, [])]:
                source = packages[spec] / part
                (target / part).parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target / part, dirs_exist_ok=True)
                else:
                    shutil.copyfile(source, target / part)
            local[url] = f"vendor/{spec.replace('@', '-')}/{path}"
    for page in pages:
        text = page.read_text()
        for url, path in local.items():
            # asv's tags carry the CDN file's subresource-integrity hash; the registry's file
            # can differ (flot's npm package has the unminified build), so the hash is
            # recomputed from the copy that is served.
            digest = base64.b64encode(hashlib.sha384((html / path).read_bytes()).digest())
            text = re.sub(
                r'((?:src|href)=")' + re.escape(url) + r'("[^>]*?integrity=")[^"]*',
                lambda m, path=path, digest=digest: (
                    f"{m.group(1)}{path}{m.group(2)}sha384-{digest.decode()}"
                ),
                text,
            )
            text = text.replace(url, path)
        page.write_text(text)
    return sorted(local)


def write_benchmarks_json() -> None:
    """`.asv/results/benchmarks.json`, the suite's description that `asv publish` reads, from
    asv's discovery of `benchmarks/` (`asv run` writes it too; it is not tracked, so a fresh
    checkout has none)."""
    from asv.benchmarks import Benchmarks
    from asv.config import Config
    from asv_runner.discovery import list_benchmarks

    listing = io.StringIO()
    list_benchmarks(str(ROOT / "benchmarks"), listing)
    found = json.loads(listing.getvalue())
    measured = _measured_values(ROOT / ".asv" / "results")
    for benchmark in found:
        benchmark["params"] = [
            [v for v in options if v in measured.get((benchmark["name"], axis), options)] or options
            for axis, options in enumerate(benchmark.get("params", []))
        ]
    Benchmarks(Config.load(str(ROOT / "asv.conf.json")), found).save()


def _measured_values(results: pathlib.Path) -> dict[tuple[str, int], set[str]]:
    """(benchmark, parameter axis) -> the values some committed result measured there. A
    value no machine measured (a GPU parameter set where no GPU ran) is left out of the
    dashboard, which would otherwise draw an empty series for it on every machine."""
    measured: dict[tuple[str, int], set[str]] = {}
    for path in results.glob("*/*.json"):
        if path.name == "machine.json":
            continue
        run = json.loads(path.read_text())
        columns = run["result_columns"]
        for name, entry in run["results"].items():
            grid = entry[columns.index("params")]
            values = entry[columns.index("result")] or []
            for combo, value in zip(itertools.product(*grid), values, strict=False):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                for axis, option in enumerate(combo):
                    measured.setdefault((name, axis), set()).add(option)
    return measured


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=pathlib.Path, default=ROOT / ".asv" / "html")
    parser.add_argument(
        "--no-asv-publish", action="store_true", help="vendor an already published folder"
    )
    args = parser.parse_args(argv)
    if not args.no_asv_publish:
        write_benchmarks_json()
        subprocess.run(["asv", "publish", "--html-dir", str(args.html)], cwd=ROOT, check=True)
    for url in vendor(args.html):
        print(f"vendored {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""MkDocs hooks (`hooks:` in mkdocs.yml).

- Before the pages render: this folder and the repository root go on `sys.path` (the executed
  code blocks import `cakedocs` and, on the benchmark page, `benchmarks.headline`), and the
  transform table starts computing in a second process (see `cakedocs.start_transform_table`).
- Pages render in file order, except `transforms.md`, moved last: it waits for that process.
- While they render: every `::: cakejax.NAME` of the API reference is collected.
- `mkdocs build --verbose` logs how long each page took to render.
- After the build: a public name of `cakejax` that no API page documents is a warning, so
  `mkdocs build --strict` fails until the reference is complete.
"""

import logging
import pathlib
import re
import sys
import time


_HERE = pathlib.Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
for _path in (str(_HERE), str(_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import cakedocs  # noqa: E402


log = logging.getLogger("mkdocs.hooks.cakejax")

_documented: set[str] = set()
_started: dict[str, float] = {}
_WAITS = "transforms.md"  # the page that shows the second process's table
_IDENTIFIER = re.compile(r"^:::\s+cakejax\.([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


def on_pre_build(config, **kwargs):
    _documented.clear()
    cakedocs.start_transform_table()


def on_files(files, config, **kwargs):
    # Pages render in the order of `files`; the transform table's page waits for the second
    # process, so it goes last, letting every other page render in the meantime.
    pages = list(files)
    last = [f for f in pages if f.src_uri == _WAITS]
    return type(files)([f for f in pages if f.src_uri != _WAITS] + last)


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri.startswith("api/"):
        _documented.update(_IDENTIFIER.findall(markdown))
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html, page, config, files, **kwargs):
    # `mkdocs build --verbose` shows where the build's time goes (the executed blocks run
    # while the Markdown is converted, between these two events).
    seconds = time.perf_counter() - _started.pop(page.file.src_uri, time.perf_counter())
    log.debug("%s rendered in %.1f s", page.file.src_uri, seconds)
    return html


def on_post_build(config, **kwargs):
    cakedocs.stop_transform_table()
    missing = [name for name in cakedocs.public_names() if name not in _documented]
    if missing:
        log.warning(
            "public names of cakejax missing from the API reference (add "
            "`::: cakejax.NAME` to a page under docs/api/): %s",
            ", ".join(missing),
        )


def on_build_error(error, **kwargs):
    cakedocs.stop_transform_table()


def on_shutdown(**kwargs):
    cakedocs.stop_transform_table()

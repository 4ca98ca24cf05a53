"""The published asv dashboard renders with no internet: `python -m benchmarks.publish` on the
committed results, served by `http.server` on 127.0.0.1, opened in headless Chromium that can
resolve no other host, must plot the committed results (the series flot drew, not just the
HTML)."""

import functools
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import threading

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

# Slow (headless Chromium): `python -m pytest -m slow`.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None or shutil.which("npm") is None,
        reason="needs headless Chromium, its driver and npm: `apt-get install chromium "
        "chromium-driver npm` (Debian; .ci/run installs them)",
    ),
]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    html = tmp_path_factory.mktemp("html")
    subprocess.run(
        [sys.executable, "-m", "benchmarks.publish", "--html", str(html)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Every host but the local server is unreachable, as on an offline cluster.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_published_pages_load_nothing_from_the_internet(dashboard):
    html, _ = dashboard
    for page in html.glob("*.html"):
        text = page.read_text()
        assert "cdn" not in text.lower() and "code.jquery.com" not in text, page.name


def test_dashboard_plots_the_committed_results_offline(dashboard, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    _, url = dashboard
    name = "bench_baseline.AgainstCourse.time_closed_over"
    browser.get(f"{url}#{name}")
    series = _drawn(browser)
    labels = " ".join(label for label, _ in series)
    assert "cakejax" in labels and "course" in labels, series
    # The grid page draws a benchmark's thumbnail when it scrolls into view: scroll through the
    # page, then every benchmark in the published index must have its plot drawn.
    browser.get(url)
    expected = WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("""
        var n = jQuery('.benchmark-plot').length;
        return n > 0 && $.asv.main_json ? Object.keys($.asv.main_json.benchmarks).length : null;
    """)
    )
    assert expected >= 10, expected

    def drawn(driver):
        driver.execute_script("window.scrollBy(0, window.innerHeight / 2);")
        n = driver.execute_script("""
            return jQuery('.benchmark-plot').filter(function () {
                return jQuery(this).find('canvas').length > 0;
            }).length;
        """)
        return n if n == expected else None

    assert WebDriverWait(browser, 60, poll_frequency=0.1).until(drawn) == expected


def _drawn(browser):
    """The series the open graph draws: [label, number of points], once it has drawn one."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("""
        var plot = window.jQuery && jQuery('#main-graph').data('plot');
        if (!plot) return null;
        var drawn = plot.getData().filter(function (s) { return s.data.length > 0; });
        return drawn.length ? drawn.map(function (s) { return [s.label, s.data.length]; })
                            : null;
    """)
    )


def test_graphs_read_at_a_glance(dashboard, browser, tmp_path):
    """What a person opening the dashboard sees (issue 33): a benchmark's graph has no series
    for a parameter set no machine measured (the GPU sets, without a GPU) and no interpreter
    path among its labels; the headline ratios have a graph of their own, one line per row.
    Screenshots of the grid and of both graphs are written where `CAKEJAX_SCREENSHOTS` says
    (the docs' copies: docs/_static/dashboard), else to a temporary folder, and must show a
    drawn plot (many coloured pixels)."""
    from PIL import Image
    from selenium.webdriver.support.ui import WebDriverWait

    from benchmarks.headline import TIMED

    _, url = dashboard
    shots = pathlib.Path(os.environ.get("CAKEJAX_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1400, 1000)
    graphs = {
        "course": "bench_baseline.AgainstCourse.time_closed_over",
        "ratios": "bench_headline.Ratios.track_ratio",
    }
    for shot, name in graphs.items():
        browser.get(f"{url}#{name}")
        labels = [label for label, _ in _drawn(browser)]
        assert not any("backend-gpu" in label for label in labels), labels
        assert not any("/work" in label or "venv" in label for label in labels), labels
        browser.save_screenshot(str(shots / f"{shot}.png"))
        if shot == "ratios":
            rows = {label.split("row-", 1)[1].split("; ")[0] for label in labels}
            assert rows <= {row.label for row in TIMED} and len(rows) >= 8, rows
    browser.get(url)
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return jQuery('.benchmark-plot canvas').length > 4")
    )
    browser.save_screenshot(str(shots / "grid.png"))
    for shot in ("course", "ratios", "grid"):
        image = Image.open(shots / f"{shot}.png").convert("RGB")
        pixels = image.get_flattened_data()
        colours = sum(1 for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 60)
        assert colours > 2000, (shot, colours)

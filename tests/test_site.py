"""The documentation site, read in a real browser (headless Chromium driven by selenium).

The site built by ``python docs/build_site.py`` is served on 127.0.0.1; every
request to any other host is refused by the browser (its host resolver maps
every other name to nothing) and recorded. For the landing page, a lesson and
an API page: no request fails and none goes elsewhere, the console shows no
error, the maths is rendered (no raw ``$$`` left, every formula typeset by
MathJax), every image loads. The site's search finds ``Conv2D``. Screenshots
of those pages go to ``docs/_site/screenshots/``.

Skipped when the site is not built, or when chromium, chromedriver or selenium
is missing, unless ``NUMCNN_TEST_SITE=1`` (CI's site step), which turns a skip
into a failure.
"""
import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent.parent / "docs" / "_site"
SCREENSHOTS = SITE / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUIRED = os.environ.get("NUMCNN_TEST_SITE") == "1"
PAGES = {"landing": "index.html", "lesson": "course/01-linear-classifier.html",
         "api": "api/numcnn.layers.conv.html"}


def unavailable(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (NUMCNN_TEST_SITE=1)")
    pytest.skip(reason)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        unavailable(f"no site in {SITE}: build it with `python docs/build_site.py`")
    handler = functools.partial(QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[docs]')")
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        unavailable("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="numcnn-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,1800",
                 # every host but the local server resolves to nothing: refused, and logged
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.get("about:blank")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def network_events(driver):
    """The DevTools network events since the last call: (method, params)."""
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"].startswith("Network."):
            events.append((message["method"], message.get("params", {})))
    return events


def open_page(driver, url):
    """Load ``url``; return (requested URLs, failures, console errors)."""
    network_events(driver)                       # drop what came before
    driver.get_log("browser")
    driver.get(url)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(() => done(true)); }"
        "else { done(false); }")
    requested, failures = [], []
    for method, params in network_events(driver):
        if method == "Network.requestWillBeSent":
            requested.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failures.append(f"{params.get('errorText')} (request {params.get('requestId')})")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            failures.append(f"{params['response']['status']} {params['response']['url']}")
    errors = [entry["message"] for entry in driver.get_log("browser")
              if entry["level"] in ("SEVERE", "ERROR")]
    return requested, failures, errors


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_offline_with_maths_and_images(name, server, browser):
    requested, failures, errors = open_page(browser, f"{server}/{PAGES[name]}")
    # chrome:// and about: are the browser's own pages (its new tab), not the network
    elsewhere = [url for url in requested
                 if not url.startswith((server + "/", "data:", "blob:", "chrome:", "about:"))]
    assert not elsewhere, f"{name}: requests to other hosts (refused): {elsewhere}"
    assert not failures, f"{name}: failed requests: {failures}"
    assert not errors, f"{name}: console errors: {errors}"
    text = browser.execute_script("return document.body.innerText")
    assert "$$" not in text, f"{name}: raw $$ left on the page"
    formulas = browser.execute_script("return document.querySelectorAll('.math').length")
    typeset = browser.execute_script(
        "return document.querySelectorAll('.math .MathJax_CHTML, .math.MathJax_CHTML, "
        ".MathJax_CHTML').length")
    if name == "lesson":
        assert formulas > 0, "the lesson lost its formulas"
    assert typeset >= formulas, f"{name}: {formulas} formulas, {typeset} typeset by MathJax"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
    broken = [src for src, loaded in images if not loaded]
    assert not broken, f"{name}: images that did not load: {broken}"
    if name == "lesson":
        assert len(images) >= 2, "the lesson's figures are missing"
        assert "PASS softmax_cross_entropy" in text, "the lesson's outputs are missing"
    SCREENSHOTS.mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_search_finds_conv2d(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    requested, failures, errors = open_page(browser, f"{server}/search.html?q=Conv2D")
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "#search-results li"))
    results = [item.text for item in
               browser.find_elements(By.CSS_SELECTOR, "#search-results li")]
    assert any("Conv2D" in result for result in results), results
    assert not failures and not errors, (failures, errors)
    SCREENSHOTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "search.png"))

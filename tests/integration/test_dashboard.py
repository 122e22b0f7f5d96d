"""The dashboard (GET /) in a real browser: headless Chromium (Debian's
chromium and chromium-driver, through python3-selenium) loads the page from a
running server; no JavaScript error may reach the console, every chart must
be drawn (a canvas with non-blank pixels), and the numbers shown must be
those of GetModelInfo and GetChurnScore. A screenshot is kept as a test
artifact (RECD_ARTIFACTS, default the test's temporary folder)."""
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Server, train

selenium = pytest.importorskip("selenium", reason="needs python3-selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

READ = "dash-read-token"
WRITE = "dash-write-token"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def srv(shop, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    train(shop.path, tmp / "m", "--churn-horizon", "90d")
    (tmp / "rt").write_text(READ + "\n")
    (tmp / "wt").write_text(WRITE + "\n")
    s = Server(tmp / "m", tmp, "--events", tmp / "ev", "--read-token-file", tmp / "rt",
               "--write-token-file", tmp / "wt", "--http-listen", "127.0.0.1:0",
               "--http-port-file", tmp / "hport")
    s.http = f"http://127.0.0.1:{int((tmp / 'hport').read_text())}"
    s.tmp = tmp
    yield s
    assert s.stop() == 0


def post(s, method, body, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{s.http}/v1/{method}", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip("needs chromium-driver")
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1800"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def drawn(browser, canvas_id):
    """Whether the canvas has a pixel that is not transparent."""
    return browser.execute_script("""
        const c = document.getElementById(arguments[0]);
        if (!c || !c.width || !c.height) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
        return false;""", canvas_id)


def test_the_page_draws_every_chart_with_the_servers_numbers(srv, browser, shop):
    # Traffic for the service chart, over both transports.
    for _ in range(20):
        post(srv, "Recommend", {"userId": "u000", "k": 5})
    info = post(srv, "GetModelInfo", {})
    member = sorted(shop.bought)[0]
    churn = post(srv, "GetChurnScore", {"userId": member}, READ)
    browser.get(srv.http + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda b: b.find_element(By.ID, "model-version").text == info["modelVersion"])
    assert browser.find_element(By.ID, "model-users").text == str(info["users"])
    assert browser.find_element(By.ID, "model-items").text == str(info["items"])
    assert browser.find_element(By.ID, "mode").text == "read-only"
    # The read token: the member charts and the churn lookup.
    browser.find_element(By.ID, "read-token").send_keys(READ)
    browser.execute_script("document.getElementById('read-token').dispatchEvent(new Event('change'))")
    wait.until(lambda b: "members with a churn score" in b.find_element(By.ID, "members-note").text)
    browser.find_element(By.ID, "member-id").send_keys(member)
    browser.find_element(By.CSS_SELECTOR, "#member-form button").click()
    wait.until(lambda b: b.find_elements(By.CLASS_NAME, "member-churn-probability"))
    shown = browser.find_element(By.CLASS_NAME, "member-churn-probability").text
    assert float(shown) == pytest.approx(churn["probability"], rel=1e-6)
    assert browser.find_element(By.CLASS_NAME, "member-segment").text == churn["segment"]
    # The campaign builder counts what StreamCampaignTargets selects.
    browser.find_element(By.ID, "campaign-count").click()
    wait.until(lambda b: b.find_element(By.ID, "campaign-n").text not in ("", "–"))
    lines = urllib.request.urlopen(urllib.request.Request(
        f"{srv.http}/v1/StreamCampaignTargets", data=b'{"minProbability": 0.5}', method="POST",
        headers={"Authorization": f"Bearer {READ}"}), timeout=10).read().decode().splitlines()
    assert browser.find_element(By.ID, "campaign-n").text == str(len(lines))
    # The history (a sample at start) and a sample of the page's own (every
    # 5 s) draw the rate chart.
    time.sleep(6)
    for canvas in ["chart-rate", "chart-strategy", "chart-shares", "chart-bands", "chart-segments", "chart-tiers",
                   "chart-churn"]:
        assert drawn(browser, canvas), f"{canvas} is blank"
    assert "Recommend" in browser.find_element(By.ID, "latency").text
    # Changes need the write token; the page says so.
    assert browser.find_element(By.CSS_SELECTOR, "#item-form button").get_attribute("disabled")
    browser.find_element(By.ID, "write-token").send_keys(WRITE)
    assert "write token" in browser.find_element(By.ID, "mode").text
    assert not browser.find_element(By.CSS_SELECTOR, "#item-form button").get_attribute("disabled")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    out = Path(os.environ.get("RECD_ARTIFACTS", srv.tmp))
    out.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(out / "dashboard.png"))

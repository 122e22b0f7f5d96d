"""The dashboard (GET /) in a real browser: headless Chromium (Debian's
chromium and chromium-driver, through python3-selenium) loads the page from a
running server; no JavaScript error may reach the console, every chart must
be drawn (a canvas with non-blank pixels), and the numbers shown must be
those of GetModelInfo, GetChurnScore, GetChurnModelInfo and GetItemStats;
the campaign's CSV downloads from the page (its read token in a header) as
the endpoint writes it. A screenshot is kept as a test artifact
(RECD_ARTIFACTS, default the test's temporary folder)."""
import collections
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import Server, train

# Missing browser parts fail the suite, not skip it: a skip would let CI
# pass without the browser test (as integration.cluster fails without
# nats-server).
NEEDS = "needs python3-selenium, chromium and chromium-driver (scripts/setup.sh installs them)"
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    raise ImportError(f"integration.dashboard {NEEDS}") from e

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
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    if not os.path.exists(CHROMEDRIVER):
        pytest.fail(f"no {CHROMEDRIVER}: integration.dashboard {NEEDS}")
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,3400"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def get(s, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(s.http + path, headers=headers),
                                timeout=10) as r:
        return r.read()


def fixed(x, digits):
    """A figure as the page prints it (num(): toFixed, "–" for NaN)."""
    return "–" if x in ("NaN", None) else f"{float(x):.{digits}f}"


def table(browser, table_id):
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")]


def drawn(browser, canvas_id):
    """Whether the canvas has a pixel that is not transparent."""
    return browser.execute_script("""
        const c = document.getElementById(arguments[0]);
        if (!c || !c.width || !c.height) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
        return false;""", canvas_id)


def stream_counts(srv, selection=None):
    """Members, and their counts by band, segment, tier and tenth of the
    churn probability, as StreamCampaignTargets selects them (default: all)."""
    lines = urllib.request.urlopen(urllib.request.Request(
        f"{srv.http}/v1/StreamCampaignTargets", data=json.dumps(selection or {}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {READ}"}), timeout=30).read().decode().splitlines()
    targets = [json.loads(line) for line in lines]
    by = {k: collections.Counter(t[k] for t in targets) for k in ("riskBand", "segment", "tier")}
    hist = [0] * 10
    for t in targets:
        hist[min(9, int(t.get("churnProbability", 0) * 10))] += 1
    return len(targets), by, hist


def test_member_overview_counts_what_the_campaign_stream_selects(srv, shop):
    """GetMemberOverview (the dashboard's member charts and campaign
    builder) counts on the server exactly the members a campaign streams,
    with no filter or with one, and leaves out a member forgotten since."""
    with pytest.raises(urllib.error.HTTPError) as e:
        post(srv, "GetMemberOverview", {})
    assert e.value.code == 401
    selection = {"minProbability": 0.3, "segments": ["at-risk", "dormant"], "limit": 40}
    picked = post(srv, "GetMemberOverview", {"selection": selection}, READ)
    n, by, _ = stream_counts(srv, selection)
    assert picked["members"] == n and 0 < n <= 40
    assert {c["name"]: c["members"] for c in picked["segments"]} == dict(by["segment"])
    with pytest.raises(urllib.error.HTTPError) as e:
        post(srv, "GetMemberOverview", {"selection": {"segments": ["no-such"]}}, READ)
    assert e.value.code == 400 and "no-such" in json.loads(e.value.read())["message"]
    for forget in [False, True]:
        if forget:
            post(srv, "ForgetUser", {"userId": sorted(shop.bought)[-1]}, WRITE)
        o = post(srv, "GetMemberOverview", {}, READ)
        n, by, hist = stream_counts(srv)
        assert o["members"] == n > 0
        for field, key in [("riskBands", "riskBand"), ("segments", "segment"), ("tiers", "tier")]:
            assert {c["name"]: c["members"] for c in o[field]} == dict(by[key]), field
        assert [int(x) for x in o["churnHistogram"]] == hist
        if not forget:
            before = n
    assert n == before - 1


def test_the_page_draws_every_chart_with_the_servers_numbers(srv, browser, shop, downloads):
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
    members = stream_counts(srv)[0]
    assert browser.find_element(By.ID, "members-note").text == f"{members} members with a churn score"
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
    # ... and its CSV downloads from the page, as the endpoint writes it.
    browser.find_element(By.ID, "campaign-csv").click()
    csv = downloads / "campaign-targets.csv"
    wait.until(lambda b: csv.exists() and csv.stat().st_size > 0)
    assert csv.read_bytes() == get(srv, "/v1/campaign-targets.csv?minProbability=0.5", READ)
    assert csv.read_text().count("\n") == len(lines) + 1  # the header
    # The churn model's validation, as GetChurnModelInfo says.
    cm = post(srv, "GetChurnModelInfo", {})
    assert cm["validationMembers"] > 0 and 0.5 < cm["rocAuc"] <= 1, cm
    wait.until(lambda b: b.find_element(By.ID, "churn-auc").text == fixed(cm["rocAuc"], 3))
    for element, value in [("churn-valid-members", str(cm["validationMembers"])),
                           ("churn-valid-churned", str(cm["validationChurned"])),
                           ("churn-pr-auc", fixed(cm["prAuc"], 3)),
                           ("churn-brier", fixed(cm["brier"], 3)),
                           ("churn-recency-auc", fixed(cm["recencyRocAuc"], 3)),
                           ("churn-base-brier", fixed(cm["baseBrier"], 3))]:
        assert browser.find_element(By.ID, element).text == value, element
    # The most recommended items: the 20 calls above, as GetItemStats says.
    stats = post(srv, "GetItemStats", {"k": 10})
    assert stats["recommendAnswers"] == "20" and stats["mostRecommended"], stats
    wait.until(lambda b: table(b, "top-items") == [[i["itemId"], i["count"]]
                                                   for i in stats["mostRecommended"]])
    # The history (a sample at start) and a sample of the page's own (every
    # 5 s) draw the rate chart.
    time.sleep(6)
    for canvas in ["chart-rate", "chart-strategy", "chart-shares", "chart-bands", "chart-segments", "chart-tiers",
                   "chart-churn", "chart-calibration", "chart-top"]:
        assert drawn(browser, canvas), f"{canvas} is blank"
    assert "Recommend" in browser.find_element(By.ID, "latency").text
    # Changes need the write token; the page says so.
    assert browser.find_element(By.CSS_SELECTOR, "#item-form button").get_attribute("disabled")
    browser.find_element(By.ID, "write-token").send_keys(WRITE)
    assert "write token" in browser.find_element(By.ID, "mode").text
    assert not browser.find_element(By.CSS_SELECTOR, "#item-form button").get_attribute("disabled")
    # Out of stock and boosted items, set from the page, listed as GetItemStats lists them.
    gone, boosted = stats["mostRecommended"][0]["itemId"], "i007"
    for item, available, boost in [(gone, "false", ""), (boosted, "", "2.5")]:
        browser.find_element(By.ID, "item-id").clear()
        browser.find_element(By.ID, "item-id").send_keys(item)
        browser.find_element(By.CSS_SELECTOR, f"#item-available option[value='{available}']").click()
        browser.find_element(By.ID, "item-boost").clear()
        browser.find_element(By.ID, "item-boost").send_keys(boost)
        browser.find_element(By.CSS_SELECTOR, "#item-form button").click()
        wait.until(lambda b: b.find_element(By.ID, "item-msg").text)
        assert browser.find_element(By.ID, "item-msg").text == "done"
        browser.execute_script("document.getElementById('item-msg').textContent = ''")
    stats = post(srv, "GetItemStats", {"k": 10})
    assert stats["unavailableItemIds"] == [gone] and stats["boosts"] == [
        {"itemId": boosted, "multiplier": 2.5}], stats
    wait.until(lambda b: table(b, "boosted-items") == [[boosted, "2.5"]])
    assert table(browser, "unavailable-items") == [[gone]]
    assert browser.find_element(By.ID, "unavailable-total").text == "1"
    assert browser.find_element(By.ID, "boosted-total").text == "1"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    out = Path(os.environ.get("RECD_ARTIFACTS", srv.tmp))
    out.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")  # the whole page, from its top
    browser.save_screenshot(str(out / "dashboard.png"))


def test_a_server_without_tokens_needs_none_on_the_page(srv, browser, tmp_path):
    """Without --read-token-file and --write-token-file the page fills the
    member charts and allows changes with no token typed (GET
    /dashboard.json says what the server requires), with no console error."""
    s = Server(srv.tmp / "m", tmp_path, "--events", tmp_path / "ev", "--http-listen",
               "127.0.0.1:0", "--http-port-file", tmp_path / "hport")
    s.http = f"http://127.0.0.1:{int((tmp_path / 'hport').read_text())}"
    try:
        assert json.loads(get(s, "/dashboard.json")) == {"readTokenRequired": False,
                                                         "writeTokenRequired": False}
        assert json.loads(get(srv, "/dashboard.json")) == {"readTokenRequired": True,
                                                           "writeTokenRequired": True}
        browser.get(s.http + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: "members with a churn score" in b.find_element(By.ID, "members-note").text)
        wait.until(lambda b: "no write token" in b.find_element(By.ID, "mode").text)
        assert not browser.find_element(By.CSS_SELECTOR, "#item-form button").get_attribute("disabled")
        assert browser.find_element(By.ID, "read-token").get_attribute("value") == ""
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        assert s.stop() == 0

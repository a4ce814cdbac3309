"""The live page in a real headless Chromium, against a running app while traffic flows.

The module deploys its own app (``/live``, one Thompson-sampling experiment over the three
digits models, a control token) and drives the page with Selenium and Debian's chromium and
chromium-driver (``make browser`` installs them; under ``CI=true`` a missing browser fails).
While a simulation runs, the page must show the arms, the best arm's traffic share growing
between two screenshots, and after the control token is entered, a pause taking effect. The
report's PNG plots of the same run must show the learning curve against decisions.

Screenshots and the report land in ``$BANDIT_SERVE_ARTIFACTS`` (else ``test-artifacts/ui/``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from serve_app.cli import app as cli_app
from serve_app.cli.simulate import SimulationResult, run_simulation
from serve_app.report.plots import share_by_decisions, traffic_shares

from .conftest import arm, deploy
from .waiting import wait_for

pytestmark = pytest.mark.e2e

UI_APP = "bandit-serve-ui"
UI_PREFIX = "/live"
EXPERIMENT = "live"
UI_TOKEN = "ui-control-token-" + "0123456789abcdef" * 2
RATES = {"logreg": 0.3, "forest": 0.5, "mlp": 0.7}
LEARNING_REQUESTS = 800
MIN_SAMPLES = 150
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ROOT = Path(__file__).resolve().parents[2]


def artifacts() -> Path:
    folder = Path(os.environ.get("BANDIT_SERVE_ARTIFACTS") or ROOT / "test-artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


SMALL = {"num_replicas": 1, "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.1}}


def ui_args(demo_store: dict[str, Any], data_dir: str) -> dict[str, Any]:
    """One Thompson-sampling experiment over the three digits models; every deployment one
    replica of 0.1 CPU (the arms are dedicated ones; the shared model pool, where the app
    has one, is kept as small)."""
    from serve_app.config import AppConfig

    uris = demo_store["uris"]
    pool = {"pool": {"deployment": SMALL}} if "pool" in AppConfig.model_fields else {}
    return {
        **pool,
        "data_dir": data_dir,
        "mlflow_tracking_uri": demo_store["tracking_uri"],
        "auth": {"control_token": UI_TOKEN},
        "router": {
            "sync_interval_s": 0.05,
            "deployment": {
                "num_replicas": 1,
                "max_ongoing_requests": 128,
                "ray_actor_options": {"num_cpus": 0.1},
            },
        },
        "experiments": [
            {
                "name": EXPERIMENT,
                "policy": {"name": "thompson", "params": {"floor": 0.02}},
                "seed": 0,
                "arms": [arm(name, uris[name]) for name in ("logreg", "forest", "mlp")],
                "guardrails": {"max_error_rate": 0.5, "min_requests": 20},
                "stopping": {
                    "rule": "bayesian",
                    "min_samples_per_arm": MIN_SAMPLES,
                    "prob_best": 0.999,
                    "expected_loss": 0.0001,
                    "action": "recommend",
                },
                "drift": {"window": 300, "min_samples": 100, "evaluate_interval_s": 2.0},
            }
        ],
        "lifecycle": {"evaluate_interval_s": 0.5, "timeline_interval_s": 0.5},
    }


@pytest.fixture(scope="module")
def live_url(
    serve_url: str, demo_store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """This module's own app at ``/live``, deleted at the end."""
    from ray import serve

    deploy(ui_args(demo_store, str(tmp_path_factory.mktemp("ui"))), serve_url, UI_APP, UI_PREFIX)
    try:
        yield serve_url + UI_PREFIX
    finally:
        serve.delete(UI_APP)


class Traffic:
    """``run_simulation`` at the issue's reward rates, on an event loop in a thread of its
    own, so a test can watch the page meanwhile and stop it when it has seen enough."""

    def __init__(self, url: str, requests: int, seed: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="simulate", daemon=True)
        self.thread.start()
        simulation = run_simulation(
            url,
            experiment=EXPERIMENT,
            requests=requests,
            concurrency=4,
            reward_rates=RATES,
            seed=seed,
            show_progress=False,
        )
        self.future = asyncio.run_coroutine_threadsafe(simulation, self.loop)

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout_s: float) -> SimulationResult:
        """Wait for the whole run (at most ``timeout_s``)."""
        try:
            return self.future.result(timeout=timeout_s)
        finally:
            self.close()

    def stop(self) -> None:
        """Cancel the run and wait until its requests have wound down."""

        async def cancel() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=30)
        self.close()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


class LearningRun:
    """The module's learning run (800 requests), started once, by the first test that asks
    (the page test starts it only after the page is up, to see it from the beginning)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.traffic: Traffic | None = None

    def start(self) -> Traffic:
        if self.traffic is None:
            self.traffic = Traffic(self.url, LEARNING_REQUESTS, seed=0)
        return self.traffic


@pytest.fixture(scope="module")
def learning_run(live_url: str) -> Iterator[LearningRun]:
    run = LearningRun(live_url)
    try:
        yield run
    finally:
        if run.traffic is not None:
            run.traffic.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through chromedriver, with a fresh profile; quit at the end."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"{', '.join(missing)} not installed: `make browser` installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the live page's browser test needs a browser under CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------ helpers


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (not only the window) as a PNG artifact."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000)}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
    )
    path = artifacts() / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


ARM_ROWS = """
return Array.from(document.querySelectorAll('#arms tbody tr')).map(row => ({
  arm: row.dataset.arm,
  requests: Number(row.dataset.requests),
  share: row.dataset.share === '' ? null : Number(row.dataset.share),
  weight: row.querySelector('td.weight').textContent,
}));
"""


def arm_rows(driver: Any) -> dict[str, dict[str, Any]]:
    return {row["arm"]: row for row in driver.execute_script(ARM_ROWS)}


def decisions(driver: Any) -> int:
    return sum(row["requests"] for row in arm_rows(driver).values())


def text(driver: Any, selector: str) -> str:
    return str(driver.execute_script(f"return document.querySelector({selector!r}).textContent"))


INJECT = """
const script = document.createElement('script');
script.textContent = 'window.injected = true';
document.body.appendChild(script);
return window.injected === true;
"""


def csp_blocks_inline_script(driver: Any) -> None:
    """The browser enforces the page's policy: an injected inline script does not run."""
    for entry in driver.get_log("browser"):  # the page itself broke no rule before
        assert "Content Security Policy" not in entry.get("message", ""), entry
    assert driver.execute_script(INJECT) is False
    messages = [entry.get("message", "") for entry in driver.get_log("browser")]
    assert any("Content Security Policy" in message for message in messages), messages


def no_page_errors(driver: Any) -> None:
    """No CSP violation and no uncaught script error in the browser's console (a probe
    message proves the console is read at all)."""
    driver.execute_script("console.error('bandit-serve console probe')")
    messages = [entry.get("message", "") for entry in driver.get_log("browser")]
    assert any("bandit-serve console probe" in message for message in messages), messages
    for message in messages:
        assert "Content Security Policy" not in message, message
        assert "Uncaught" not in message, message


# ------------------------------------------------------------------ tests


def test_pages_and_assets_carry_the_security_headers(live_url: str) -> None:
    serve_url = live_url.removesuffix(UI_PREFIX)
    with httpx.Client(base_url=live_url, timeout=10) as http:
        scripts: list[str] = []
        for path in ("/ui", f"/ui/experiments/{EXPERIMENT}"):
            page = http.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["content-security-policy"] == CSP
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert f'data-base="{UI_PREFIX}"' in page.text  # the Serve route prefix
            found = re.findall(r'<script defer src="([^"]+)"', page.text)
            assert found
            assert all(src.startswith(f"{UI_PREFIX}/ui/static/") for src in found)
            scripts += found
        asset = httpx.get(serve_url + scripts[-1], timeout=10)
        assert asset.status_code == 200
        assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"
        revalidated = http.get(scripts[-1].removeprefix(UI_PREFIX).split("?")[0])
        assert revalidated.headers["cache-control"] == "no-cache"
        etag = revalidated.headers["etag"]
        assert http.get(revalidated.url, headers={"if-none-match": etag}).status_code == 304
        for escape in ("..%2Fendpoints.py", "%2e%2e/%2e%2e/config.py", "vendor/uplot/LICENSE"):
            refused = http.get(f"/ui/static/{escape}")
            assert refused.status_code == 404, escape
            assert refused.content == b"not found"
        hostile = http.get("/ui/experiments/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        assert hostile.status_code == 404
        assert "<script" not in hostile.text
        # The request guard applies to the page as to the API: a foreign Host is refused.
        assert http.get("/ui", headers={"host": "evil.example"}).status_code == 400


def test_the_page_follows_a_learning_run(
    live_url: str, browser: Any, learning_run: LearningRun
) -> None:
    browser.get(live_url + "/ui")
    link = wait_for(
        lambda: browser.execute_script(
            "return document.querySelector('#experiments a[href$=\"/ui/experiments/live\"]')"
        ),
        20,
        "the experiment list",
    )
    assert link.get_dom_attribute("href") == f"{UI_PREFIX}/ui/experiments/{EXPERIMENT}"
    screenshot(browser, "ui-0-index.png")
    csp_blocks_inline_script(browser)
    link.click()
    wait_for(lambda: browser.current_url.endswith(f"/ui/experiments/{EXPERIMENT}"), 10, "page")
    wait_for(lambda: len(arm_rows(browser)) == 3, 20, "the three arms")
    assert set(arm_rows(browser)) == set(RATES)

    traffic = learning_run.start()
    wait_for(lambda: decisions(browser) >= 10, 60, "the first decisions on the page")
    early = arm_rows(browser)
    screenshot(browser, "ui-1-early.png")
    wait_for(lambda: decisions(browser) >= 650 or traffic.done(), 90, "650 decisions on the page")
    time.sleep(3.5)  # one more refresh, so the charts hold the latest samples
    late = arm_rows(browser)
    screenshot(browser, "ui-2-late.png")

    assert late["mlp"]["share"] > early["mlp"]["share"], (early, late)
    assert late["mlp"]["share"] > 0.6, late
    assert late["mlp"]["share"] == max(row["share"] for row in late.values())
    points = int(
        browser.execute_script("return document.querySelector('#chart-traffic').dataset.points")
    )
    assert points >= 8
    assert browser.execute_script(
        "return document.querySelectorAll('#chart-traffic canvas').length"
    )
    stopping = text(browser, "#stopping")
    assert f"of {MIN_SAMPLES} samples (feedback) per arm" in stopping
    assert "Enter the control token to see the audit trail" in text(browser, "#audit")
    assert browser.execute_script("return document.querySelector('#action-pause').disabled")
    # The credible intervals the arms table shows are the posterior's exact quantiles.
    for a, b in ((1.0, 1.0), (37.5, 12.25), (412.0, 160.0), (3.0, 250.0)):
        low, high = browser.execute_script(
            "const i = BanditUI.credibleInterval({family: 'beta', alpha: arguments[0], "
            "beta: arguments[1]}); return [i.low, i.high];",
            a,
            b,
        )
        assert np.allclose([low, high], stats.beta(a, b).ppf([0.025, 0.975]), atol=1e-9)
    no_page_errors(browser)


def test_report_plots_show_the_learning_curve(live_url: str, learning_run: LearningRun) -> None:
    result = learning_run.start().result(timeout_s=120)
    assert result.completed == LEARNING_REQUESTS
    assert result.errors == 0
    report = httpx.get(
        f"{live_url}/experiments/{EXPERIMENT}/report", params={"timeline_points": 5000}, timeout=30
    ).json()
    series = traffic_shares(report)
    assert len(series.end) >= 10  # many samples of a 800-request run, not one flat band
    assert series.end[-1] >= LEARNING_REQUESTS - 50
    # The learning curve: mlp's routing weight starts at a third (the untrained posterior,
    # before any feedback) and ends near one; it has most of the later traffic. (Its share
    # of the first few dozen decisions is no test: Thompson sampling at these reward rates
    # often favours it within twenty feedbacks, depending on how they interleave.)
    mlp = series.arms.index("mlp")
    sampled = np.flatnonzero(np.isfinite(series.weights[:, mlp]))
    first, last = series.weights[sampled[0], mlp], series.weights[sampled[-1], mlp]
    assert series.decisions[sampled[0]] == 0, series.decisions[:3].tolist()
    assert abs(first - 1 / 3) < 0.05, series.weights[:3].tolist()
    assert last > 0.9, series.weights[-3:].tolist()
    best = series.share_of("mlp")
    later = best[len(best) // 2 :].mean()
    assert later > 0.7, best.tolist()
    ranges = share_by_decisions(series)
    assert ranges[-1][2]["mlp"] > ranges[0][2]["mlp"]

    out = artifacts() / "report"
    command = ["report", "--url", live_url, "--experiment", EXPERIMENT, "--out", str(out)]
    printed = CliRunner().invoke(cli_app, command)
    assert printed.exit_code == 0, printed.output
    assert "traffic share by decisions" in printed.output
    for name in ("traffic_share.png", "cumulative_reward.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert "Traffic share by decisions" in (out / "report.html").read_text()


def test_pause_from_the_page_while_traffic_flows(live_url: str, browser: Any) -> None:
    if not browser.current_url.endswith(f"/ui/experiments/{EXPERIMENT}"):
        browser.get(f"{live_url}/ui/experiments/{EXPERIMENT}")
    before = wait_for(lambda: decisions(browser), 20, "the arms")
    traffic = Traffic(live_url, 5000, seed=1)  # stopped once the page has shown the pause
    try:
        wait_for(lambda: decisions(browser) > before + 30, 30, "new traffic on the page")
        browser.find_element("id", "token-input").send_keys(UI_TOKEN)
        browser.find_element("id", "token-save").click()
        assert UI_TOKEN not in browser.current_url
        stored = browser.execute_script("return sessionStorage.getItem('bandit-serve.token')")
        assert stored == UI_TOKEN
        assert browser.execute_script("return localStorage.length") == 0
        assert browser.find_element("id", "token-input").get_property("value") == ""
        pause = browser.find_element("id", "action-pause")
        wait_for(lambda: pause.is_enabled(), 5, "the pause button")
        assert not traffic.done(), "the simulation ended before the pause"
        pause.click()
        wait_for(
            lambda: (
                browser.find_element("id", "status").get_dom_attribute("data-status") == "paused"
            ),
            15,
            "the status to show paused",
        )
        assert text(browser, "#status") == "paused"
        wait_for(lambda: "pause" in text(browser, "#audit"), 15, "the pause in the audit trail")
        wait_for(
            lambda: arm_rows(browser)["logreg"]["weight"] == "100.0%", 15, "all traffic to logreg"
        )
        screenshot(browser, "ui-3-paused.png")
        browser.find_element("id", "action-resume").click()
        wait_for(
            lambda: (
                browser.find_element("id", "status").get_dom_attribute("data-status") == "running"
            ),
            15,
            "the status to show running again",
        )
        assert not traffic.done(), "the simulation ended during the test"
    finally:
        traffic.stop()
    summary = httpx.get(f"{live_url}/experiments/{EXPERIMENT}", timeout=10).json()
    assert summary["status"] == "running"
    no_page_errors(browser)

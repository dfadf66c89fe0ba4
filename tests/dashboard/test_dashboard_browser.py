"""Real browser against the running app: Debian's Chromium driven by Playwright, a uvicorn
subprocess, a Celery worker (the control loop behind "reconcile now") and the simulator.

The app runs on its own SQLite file under a temporary VAR_DIR with the demo loaded, whatever
DATABASE_URL the test run uses (the subprocesses cannot see pytest's test database).
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import demo_app
from scaling.models import Decision

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def app_url(start_module_simulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Ten times faster simulated time: the demo's 60 s cold starts take 6 s.
    sim = start_module_simulator(None, speed=10.0)
    env = {"SIMULATOR_PORT": sim.rsplit(":", 1)[1]}
    with demo_app(tmp_path_factory.mktemp("var"), worker=(), env=env) as (url, _):
        yield url


@pytest.fixture
def browser(need_binary: Any) -> Iterator[Any]:
    chromium = need_binary("chromium", "apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def log_in(browser: Any, url: str, username: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "demo-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_until_fleet_is_live(page: Any) -> None:
    """The fleet page drew its first frame (the layout below the heatmap has settled)."""
    page.wait_for_selector("#live-status.live", timeout=30000)
    page.wait_for_selector("#heatmap .main-svg", timeout=30000)


def frames_seen(page: Any) -> int:
    return int(page.eval_on_selector("#workload-page", "el => Number(el.dataset.frames || 0)"))


def test_operator_watches_live_charts_edits_a_threshold_and_sees_the_decision(app_url, browser):
    alice = log_in(browser, app_url, "alice")
    wait_until_fleet_is_live(alice)
    assert alice.locator("text=globex-support").count() == 0  # not alice's tenant
    shoot(alice, "fleet")

    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-metric .main-svg", timeout=30000)
    # The chart updates: deltas keep arriving and the metric line gets real values.
    alice.wait_for_function(
        "() => Number(document.getElementById('workload-page').dataset.frames || 0) >= 3",
        timeout=20000,
    )
    alice.wait_for_function(
        "() => (document.getElementById('chart-metric').data[0].y || []).some(v => v !== null)",
        timeout=30000,
    )
    assert alice.get_attribute("#chart-metric", "data-target") == "16"
    workload_url = alice.url

    # A second operator's browser has the same page open, at version 1.
    other = log_in(browser, app_url, "admin")
    other.goto(workload_url)
    other.wait_for_selector("#chart-metric .main-svg", timeout=30000)

    alice.fill("#id_target", "2")
    alice.fill("#id_reason", "browser test")
    alice.click("#policy-save")
    alice.wait_for_selector("text=Saved version 2", timeout=10000)
    assert alice.get_attribute("#chart-metric", "data-target") == "2"
    # The other browser's line moves without a reload (the next delta carries the policy).
    other.wait_for_function(
        "() => document.getElementById('chart-metric').dataset.target === '2'", timeout=10000
    )
    shapes = other.evaluate("() => document.getElementById('chart-metric').layout.shapes")
    assert shapes[0]["y0"] == 2
    shoot(alice, "workload-after-edit")

    # The reconcile queued on save runs the control loop: its decision shows up live.
    alice.wait_for_selector("#decisions li.decision >> text=policy v2", timeout=30000)
    # A live-added card reads like a server-rendered one ("Applied", not "applied").
    badge = alice.inner_text("#decisions li.decision.fresh .badge")
    assert badge in {str(label) for _, label in Decision.Outcome.choices}
    # ... and as a marker on the replica chart, its reason on hover (target 2: a scale-up).
    marked = alice.wait_for_function(
        """() => document.getElementById('chart-replicas').data
              .filter(t => t.mode === 'markers')
              .flatMap(t => t.hovertext)
              .find(text => text.includes('(policy v2)'))""",
        timeout=30000,
    ).json_value()
    assert " → " in marked and "(policy v2): " in marked
    shoot(alice, "workload-decision")

    # What-if: back-test edited values (not saved) against the stored policy, with progress.
    alice.fill("#id_target", "12")
    alice.click("#preview-run")
    alice.wait_for_selector("#preview-progress:not([hidden])", timeout=5000)
    alice.wait_for_selector("#preview-summary >> text=Edited: SLO attainment", timeout=60000)
    assert alice.is_visible("#chart-preview .main-svg")
    assert alice.get_attribute("#chart-metric", "data-target") == "2"  # nothing was saved
    shoot(alice, "workload-preview")

    # The other browser still holds version 1: its save is a conflict, not an overwrite.
    other.fill("#id_max_replicas", "7")
    other.click("#policy-save")
    other.wait_for_selector("#policy-conflict:not([hidden])", timeout=10000)
    assert "target" in other.inner_text("#policy-conflict")
    shoot(other, "workload-conflict")


def test_viewer_gets_no_editor_and_reconnects_after_a_dropped_socket(app_url, browser):
    bob = log_in(browser, app_url, "bob")
    # The fleet page's first frame fills the heatmap and the per-cluster table, which pushes
    # the workload links ~350 px down a moment after the page loads: a click in that moment
    # lands beside the link, nothing navigates, and the wait for the chart times out. Click
    # once the page is live, as a person would once it stops moving.
    wait_until_fleet_is_live(bob)
    bob.click("#workloads >> text=globex-support/support-llama-8b")
    bob.wait_for_url("**/workloads/*/", timeout=10000)
    bob.wait_for_selector("#chart-metric .main-svg", timeout=30000)
    assert bob.locator("#policy-form").count() == 0
    assert "operator role" in bob.inner_text("aside")
    bob.wait_for_selector("#live-status.live", timeout=30000)
    seen = frames_seen(bob)
    bob.evaluate("() => window.liveStream.drop()")
    bob.wait_for_selector("#live-status:not(.live)", timeout=5000)
    bob.wait_for_selector("#live-status.live", timeout=30000)  # a fresh snapshot arrived
    bob.wait_for_function(
        f"() => Number(document.getElementById('workload-page').dataset.frames) > {seen + 2}",
        timeout=30000,
    )
    shoot(bob, "workload-viewer")


SCREENSHOTS = ROOT / "docs" / "screenshots"


def screenshot_for_docs(page: Any, name: str) -> None:
    """Into tests/artifacts/ like every screenshot; into docs/screenshots/ (the ones the docs
    show, kept in git) only with UPDATE_SCREENSHOTS=1, so a test run leaves the tree clean."""
    page.evaluate("() => window.scrollTo(0, 0)")
    shoot(page, f"docs-{name}")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


CHART_IDS = [
    *("chart-replicas", "chart-metric", "chart-ttft"),
    *("chart-queue", "chart-gpu-util", "chart-gpu-mem"),
]
SPAN_OF = """ids => ids.map(id => {
    const r = document.getElementById(id).layout.xaxis.range;
    const t = (text) => Date.parse(text.replace(' ', 'T') + 'Z');
    return (t(r[1]) - t(r[0])) / 1000;
})"""


def test_one_time_range_for_every_chart_labelled_lines_and_pod_bands(app_url, browser):
    alice = log_in(browser, app_url, "alice")
    wait_until_fleet_is_live(alice)
    screenshot_for_docs(alice, "fleet")
    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_function(
        "() => (document.getElementById('chart-metric').data[0].y || []).some(v => v !== null)",
        timeout=30000,
    )
    assert alice.evaluate(SPAN_OF, CHART_IDS) == [300] * len(CHART_IDS)  # 5 min by default
    alice.click("#range-picker >> text=1 h")
    alice.wait_for_function(f"() => ({SPAN_OF})({CHART_IDS}).every(s => s === 3600)")
    # A drag-zoom on one chart (Plotly's relayout) moves every other chart to the same window.
    alice.evaluate(
        """() => { const r = document.getElementById('chart-ttft').layout.xaxis.range;
                   const end = Date.parse(r[1].replace(' ', 'T') + 'Z');
                   const iso = t => new Date(t).toISOString().replace('T', ' ').slice(0, 19);
                   Plotly.relayout('chart-ttft', {'xaxis.range[0]': iso(end - 120000),
                                                  'xaxis.range[1]': iso(end - 60000)}); }"""
    )
    alice.wait_for_function(f"() => ({SPAN_OF})({CHART_IDS}).every(s => Math.abs(s - 60) < 2)")
    assert alice.is_visible("#range-live")
    alice.click("#range-live")  # back to the live edge, the window sliding on with each delta
    alice.wait_for_function(f"() => ({SPAN_OF})({CHART_IDS}).every(s => s === 3600)")
    # ◀ pans every chart half a window back, off the live edge.
    ends = """ids => ids.map(id => document.getElementById(id).layout.xaxis.range[1])"""
    live_end = max(alice.evaluate(ends, CHART_IDS))
    alice.click("#range-back")
    alice.wait_for_function(f"() => new Set(({ends})({CHART_IDS})).size === 1")
    panned = alice.evaluate(ends, CHART_IDS)[0]
    assert panned < live_end and alice.is_visible("#range-live")
    assert alice.evaluate(SPAN_OF, CHART_IDS) == [3600] * len(CHART_IDS)
    alice.click("#range-live")
    # A day of 1 Hz points is thinned to at most 900 drawn, the newest kept.
    thinned = alice.evaluate(
        """() => { const pts = Array.from({length: 86400}, (_, i) => ({t: 1.7e9 + i}));
                   const kept = Charts.thin(pts);
                   return [kept.length, kept[kept.length - 1].t - pts[pts.length - 1].t]; }"""
    )
    assert thinned[0] <= 901 and thinned[1] == 0

    labels = alice.evaluate(
        "() => document.getElementById('chart-metric').layout.annotations.map(a => a.text)"
    )
    # The page's policy (another test may have edited it: the module shares one app).
    target, upper, lower = (
        float(alice.get_attribute("#chart-metric", f"data-{name}"))
        for name in ("target", "upper", "lower")
    )
    assert lower < target < upper

    def short(value: float) -> str:
        return f"{value:.3f}".rstrip("0").rstrip(".")

    assert labels[:3] == [
        f"target {short(target)}",
        f"scale up above {short(upper)}",
        f"scale down below {short(lower)}",
    ]
    y_range = alice.evaluate("() => document.getElementById('chart-metric').layout.yaxis.range")
    assert y_range[1] - y_range[0] <= 7 * (upper - lower) + 1e-6  # the band fills >= 1/7
    assert "GiB" in alice.evaluate(
        "() => document.getElementById('chart-gpu-mem').layout.yaxis.ticksuffix"
    )
    alice.click("#range-picker >> text=5 min")
    screenshot_for_docs(alice, "workload")

    # Eight pods: a lower target scales to the policy's max of 8; their utilisation is then
    # drawn as a min / median / max band with every pod listed on hover, not eight lines.
    alice.fill("#id_target", "1")
    alice.fill("#id_reason", "browser test: bands")
    alice.click("#policy-save")
    saved = alice.wait_for_selector("text=/Saved version \\d+/", timeout=10000).inner_text()
    version = saved.split("Saved version ")[1].split(";")[0]
    # Target 1 under a load of about 10 per replica: the lines keep their room and the value
    # the clipped axis cannot show is written at its edge.
    alice.wait_for_function(
        """() => document.getElementById('chart-metric').layout.annotations
              .some(a => a.name === 'off-scale' && a.text.startsWith('▲ now '))""",
        timeout=15000,
    )
    # The decision the save triggers arrives live, its time in the one format with its zone.
    alice.wait_for_selector(f"#decisions li.decision >> text=policy v{version}", timeout=30000)
    assert alice.inner_text("#decisions li.decision time").endswith(" UTC")
    alice.wait_for_function(
        """() => document.getElementById('chart-gpu-util').data.some(t => t.band === 'median'
              && (t.text || []).some(s => s.split('<br>').length > 4))""",
        timeout=90000,
    )
    traces = alice.evaluate("() => document.getElementById('chart-gpu-util').data.length")
    assert traces == 3
    screenshot_for_docs(alice, "workload-bands")


def test_tenant_page_streams_and_only_streaming_pages_show_the_live_badge(app_url, browser):
    alice = log_in(browser, app_url, "alice")
    alice.goto(f"{app_url}/tenants/acme-chat/")
    alice.wait_for_selector("#live-status.live", timeout=30000)
    alice.wait_for_function(
        "() => Number(document.getElementById('tenant-page').dataset.frames || 0) >= 3",
        timeout=20000,
    )
    alice.wait_for_function(
        """() => [...document.querySelectorAll('#workloads [data-field=metric]')]
              .some(td => td.textContent !== '\\u2013')""",  # not the page's placeholder
        timeout=30000,
    )
    assert alice.get_attribute("link[rel=icon]", "href").endswith(".svg")
    screenshot_for_docs(alice, "tenant")
    alice.goto(f"{app_url}/decisions/")
    assert alice.locator("#live-status").count() == 0  # no stream, no badge
    screenshot_for_docs(alice, "decisions")


def usage_rows(page: Any) -> list[list[str]]:
    """The quota usage table as text: one list of cells per row, whitespace collapsed."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "#usage tbody tr",
        "trs => trs.map(tr => [...tr.cells]"
        "  .map(td => td.textContent.replace(/\\s+/g, ' ').trim()))",
    )
    return rows


def test_quota_usage_follows_an_admin_edit_without_a_reload(app_url, browser):
    alice = log_in(browser, app_url, "alice")
    alice.goto(f"{app_url}/tenants/acme-chat/")
    alice.wait_for_selector("#live-status.live", timeout=30000)
    alice.wait_for_function(
        "() => Number(document.getElementById('usage').dataset.frame || 0) >= 1", timeout=20000
    )
    # The rows drawn from the stream read as the server renders them (a page without
    # JavaScript), except the GPUs held and the meter, which move with the loop.
    context = browser.new_context(java_script_enabled=False)
    static = context.new_page()
    static.goto(f"{app_url}/accounts/login/")
    static.fill("input[name=username]", "alice")
    static.fill("input[name=password]", "demo-password")
    static.click("button[type=submit]")
    static.goto(f"{app_url}/tenants/acme-chat/")

    def steady(rows: list[list[str]]) -> list[list[str]]:
        return [[row[0], row[1], row[3], row[4]] for row in rows]

    served = usage_rows(static)
    context.close()
    assert served and steady(usage_rows(alice)) == steady(served)
    a100 = next(row for row in served if row[:2] == ["acme-chat", "A100-80GB"])
    assert a100[3] == "8"  # the demo's nominal

    alice.evaluate("() => { window.notReloaded = true; }")
    admin = log_in(browser, app_url, "admin")

    def set_nominal(value: int) -> None:
        admin.goto(f"{app_url}/admin/quotas/quota/?q=acme-chat")
        row = admin.locator("#result_list tbody tr").filter(
            has=admin.locator("td.field-gpu_type", has_text="A100-80GB")
        )
        row.first.locator("th a").click()
        admin.fill("input[name=nominal]", str(value))
        admin.click("input[name=_save]")
        admin.wait_for_selector(".messagelist .success", timeout=10000)

    set_nominal(3)

    alice.wait_for_function(
        """() => [...document.querySelectorAll('#usage tbody tr')].some(tr =>
              tr.cells[0].textContent.trim() === 'acme-chat'
              && tr.cells[1].textContent.trim() === 'A100-80GB'
              && tr.cells[3].textContent.trim() === '3')""",
        timeout=20000,
    )
    assert alice.evaluate("() => window.notReloaded === true")
    set_nominal(8)  # the module's other tests see the demo's quota

"""The live what-if in a real browser: typing a new target moves the threshold lines and the
what-if replica curve before any Save. Chromium (Debian's) driven by Playwright, against uvicorn
and a Celery worker with its beat running the control loop every second, so the signal history
the what-if replays is the one the loop recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import demo_app
from tests.dashboard.test_dashboard_browser import browser, log_in, shoot  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def looping_app(
    start_module_simulator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    sim = start_module_simulator(None, speed=10.0)
    env = {"SIMULATOR_PORT": sim.rsplit(":", 1)[1], "CONTROL_LOOP_INTERVAL": "1"}
    with demo_app(tmp_path_factory.mktemp("var"), worker=["-B"], env=env) as (url, _):
        yield url


def whatif_curve(page: Any) -> list[int]:
    return json.loads(page.get_attribute("#chart-whatif", "data-whatif") or "[]")


def test_typing_a_target_moves_the_lines_and_the_whatif_curve_before_any_save(
    looping_app,
    browser,  # noqa: F811 (the imported fixture)
):
    alice = log_in(browser, looping_app, "alice")
    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-metric .main-svg", timeout=30000)
    # The loop (every second) records signals; reload the what-if until it replays 10 ticks
    # of them, with load on the metric.
    alice.wait_for_function(
        """() => {
          document.getElementById('whatif-window').dispatchEvent(new Event('change'));
          const curve = document.getElementById('chart-whatif').dataset.whatif || '[]';
          return JSON.parse(curve).length >= 10
            && (document.getElementById('chart-metric').data[0].y || []).some(v => v > 1);
        }""",
        timeout=60000,
        polling=1000,
    )
    before = whatif_curve(alice)
    redraws = int(alice.get_attribute("#chart-whatif", "data-redraws"))
    assert alice.get_attribute("#chart-metric", "data-target") == "16"

    alice.fill("#id_target", "0.5")
    # The lines move at once, client side ...
    shapes = alice.evaluate("() => document.getElementById('chart-metric').layout.shapes")
    assert shapes[0]["y0"] == 0.5
    # ... and the what-if curve follows, wanting more replicas at a far lower target.
    # (Waiting for the curve itself: an answer to the window reloads above may land first.)
    alice.wait_for_function(
        f"""() => Number(document.getElementById('chart-whatif').dataset.redraws) > {redraws}
              && Math.max(...JSON.parse(document.getElementById('chart-whatif').dataset.whatif))
                 > {max(before)}""",
        timeout=10000,
    )
    after = whatif_curve(alice)
    assert max(after) > max(before)
    assert "Edited policy:" in alice.inner_text("#whatif-summary")
    assert " GPU-hours ($" in alice.inner_text("#whatif-summary")  # money beside them
    # Nothing was saved.
    assert alice.get_attribute("#chart-metric", "data-target") == "16"
    assert alice.locator("#policy-saved").inner_text() == ""
    shoot(alice, "workload-whatif")


# Wraps the page's fetch: the answer to the what-if asked with target 7 is held back until
# the test calls window.releaseSeven(), and every what-if request's target is recorded, in
# the order sent.
SLOW_SEVEN = """() => {
  window.sentTargets = [];
  let release;
  const held = new Promise((done) => { release = done; });
  window.releaseSeven = release;
  const real = window.fetch;
  window.fetch = async (url, options) => {
    if (!String(url).includes("/whatif/")) return real(url, options);
    const target = options.body.get("target");
    window.sentTargets.push(target);
    const response = await real(url, options);
    if (target === "7") await held;
    return response;
  };
}"""


def test_a_slow_old_answer_never_overwrites_a_newer_edit(
    looping_app,
    browser,  # noqa: F811 (the imported fixture)
):
    alice = log_in(browser, looping_app, "alice")
    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-whatif .main-svg", timeout=30000)
    alice.evaluate(SLOW_SEVEN)
    redraws = int(alice.get_attribute("#chart-whatif", "data-redraws"))

    alice.fill("#id_target", "7")  # sent at once; its answer is held back
    alice.wait_for_function("() => window.sentTargets.length === 1")
    alice.fill("#id_target", "9")  # waits for it ...
    alice.fill("#id_target", "11")  # ... and is replaced by this one, still waiting
    alice.wait_for_timeout(500)
    assert alice.evaluate("window.sentTargets") == ["7"]
    alice.evaluate("window.releaseSeven()")
    alice.wait_for_function(
        "() => JSON.parse(document.getElementById('chart-whatif').dataset.drawnFor || '{}')"
        ".target === '11'",
        timeout=20000,
    )
    alice.wait_for_timeout(1000)  # time for any other answer to land (none may be drawn)
    # One at a time: 9 was never sent, 11 went when 7's answer landed.
    assert alice.evaluate("window.sentTargets") == ["7", "11"]
    # 7's answer came while 11 was newer: not drawn. 11's is, once.
    assert int(alice.get_attribute("#chart-whatif", "data-redraws")) == redraws + 1


# Types 13 in the target field and returns the charts Plotly.react redrew while the page
# handled that one input event (synchronously: no stream frame can come in between).
REDRAWN_BY_AN_EDIT = """() => {
  const real = Plotly.react;
  const redrawn = [];
  Plotly.react = function (div, ...rest) {
    redrawn.push(typeof div === "string" ? div : div.id);
    return real.call(this, div, ...rest);
  };
  try {
    const input = document.getElementById("id_target");
    input.value = "13";
    input.dispatchEvent(new Event("input", { bubbles: true }));
  } finally {
    Plotly.react = real;
  }
  return redrawn;
}"""


def test_an_edit_redraws_the_metric_chart_then_the_whatif_and_nothing_else(
    looping_app,
    browser,  # noqa: F811 (the imported fixture)
):
    alice = log_in(browser, looping_app, "alice")
    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-whatif .main-svg", timeout=30000)
    # The threshold lines at once: only the metric chart draws them.
    assert alice.evaluate(REDRAWN_BY_AN_EDIT) == ["chart-metric"]
    # Then the what-if chart, with the answer to this edit.
    alice.wait_for_function(
        "() => JSON.parse(document.getElementById('chart-whatif').dataset.drawnFor || '{}')"
        ".target === '13'",
        timeout=20000,
    )

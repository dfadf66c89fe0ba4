"""The live what-if's round trip in the browser: keystroke to the chart redrawn.

1. A throw-away demo (``migrate``, ``load_demo``) in a temporary ``VAR_DIR``, with 6 hours
   of stored signals for acme-chat/chat-llama-8b recorded every 5 s (the ticks of
   ``bench_whatif.py``), compacted as the periodic task leaves them (minute means before the
   last hour). No control loop runs, so the history does not move between edits.
2. uvicorn serves it; Chromium (Playwright) logs in as alice and opens the workload page.
3. Per window (1 h, 6 h) and algorithm: pick them, then type a new target REPEATS times
   (a different value each time, so no answer is a repeat). Measured in the page: from the
   form's ``input`` event (``performance.now()``) to the ``plotly_afterplot`` of the what-if
   chart that drew the answer to that edit (the last redraw once nothing is in flight).
   Median and max of the REPEATS, and the server time the answers reported.

Run: ``.venv/bin/python bench/bench_whatif_browser.py [--repeats 12] [--code DIR]``
(Chromium at /usr/bin/chromium); ``--code`` serves another tree (``git archive`` of an older
commit) for a before/after on the same machine and minutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from bench.servers import demo_app  # noqa: E402

WORKLOAD = "chat-llama-8b"  # acme-chat's, an hpa policy on requests running
HOURS = 6
TICK_S = 5.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]
# Installed once the page has drawn its first what-if: stamps each edit, and records the
# time from the latest edit to each redraw of the what-if chart.
HOOK = """() => {
  const gd = document.getElementById("chart-whatif");
  window.__edit = null; window.__redraws = [];
  document.addEventListener("input", () => { window.__edit = performance.now(); }, true);
  gd.on("plotly_afterplot", () => {
    if (window.__edit !== null) window.__redraws.push(performance.now() - window.__edit);
  });
}"""


def seed(pk_out: Path) -> None:
    """Step 1's history, in this process (DJANGO settings from the environment)."""
    import django

    django.setup()
    from scaling import signal_store
    from scaling.models import Workload
    from scaling.signals import SignalTick

    workload = Workload.objects.get(deployment=WORKLOAD)
    now = time.time()
    ticks = int(HOURS * 3600 / TICK_S)
    for k in range(ticks):
        value = 12.0 if (k // 120) % 2 == 0 else 3.0  # 10 busy minutes, 10 quiet ones
        tick = SignalTick(
            now=now - HOURS * 3600 + TICK_S * k,
            current=2,
            ready=2,
            metric=(now - HOURS * 3600 + TICK_S * k - 1, value),
            metric_pods=2.0,
            prompt_tokens_per_s=900.0 * value,
            generation_tokens_per_s=80.0 * value,
            ttft_p95_s=0.2 + value / 100,
        )
        signal_store.append_ticks([(workload, workload.loop_state.get("signals"), tick)])
    workload.save(update_fields=["loop_state"])
    signal_store.downsample(now)
    pk_out.write_text(str(workload.pk))


def measure(page: Any, window: str, algorithm: str, repeats: int) -> dict[str, float]:
    page.select_option("#whatif-window", window)
    page.select_option("select[name=algorithm]", algorithm)
    settle(page)
    spent, server = [], []
    for i in range(repeats):
        before = page.evaluate("window.__redraws.length")
        page.fill("input[name=target]", f"{4 + 0.1 * (i + 1):.1f}")
        page.wait_for_function(f"window.__redraws.length > {before}", timeout=20000)
        settle(page)
        spent.append(page.evaluate("window.__redraws[window.__redraws.length - 1]"))
        timing = page.text_content("#whatif-timing") or ""
        server.append(float(timing.split("server ", 1)[1].split(" ms", 1)[0].replace(",", "")))
    return {
        "median_ms": round(statistics.median(spent), 1),
        "max_ms": round(max(spent), 1),
        "server_median_ms": round(statistics.median(server), 1),
    }


def settle(page: Any) -> None:
    """Until no redraw came for 600 ms (the answer to the last edit is drawn)."""
    count = -1
    while True:
        now = page.evaluate("window.__redraws.length")
        if now == count:
            return
        count = now
        page.wait_for_timeout(600)


def run(url: str, pk: str, repeats: int) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/accounts/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "demo-password")
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        page.goto(f"{url}/workloads/{pk}/")
        page.wait_for_selector("#chart-whatif .main-svg", timeout=30000)
        page.evaluate(HOOK)
        out = {}
        for window, label in (("3600", "1 h"), ("21600", "6 h")):
            for algorithm in ("hpa", "kpa", "predictive"):
                out[f"{algorithm} {label}"] = measure(page, window, algorithm, repeats)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument(
        "--code", type=Path, default=HERE, help="serve this tree (e.g. a `git archive` of main)"
    )
    parser.add_argument("--seed", type=Path, help=argparse.SUPPRESS)  # step 1, in a child
    args = parser.parse_args()
    if args.seed:
        seed(args.seed)
        return
    var = Path(tempfile.mkdtemp(prefix="bench-whatif-"))
    pk_file = var / "pk"
    seed_step = [sys.executable, __file__, "--seed", str(pk_file)]
    try:
        with demo_app(var, code=args.code, seed=seed_step) as (url, _):
            results = run(url, pk_file.read_text(), args.repeats)
    finally:
        shutil.rmtree(var, ignore_errors=True)
    print(f"what-if in the browser, keystroke to redraw, median of {args.repeats}:")
    for name, r in results.items():
        print(
            f"  {name}: {r['median_ms']} ms (max {r['max_ms']} ms; "
            f"server {r['server_median_ms']} ms)"
        )


if __name__ == "__main__":
    main()

"""Metrics that go away or make no sense, under the control loop against the simulator.

- An outage longer than the policy's ``max_metric_age_s``: nothing scales down during it, nor
  in the first stabilisation window after the metrics return (a window of fresh observations
  is needed before a scale-down).
- Nonsense values from the exporter (NaN, negative, +Inf on the policy's gauge; a 1.8e19
  counter and a counter that goes backwards on the token counters an offered-work algorithm
  reads): the loop holds, never reads zero, never scales on them, and says why.
"""

import time

import pytest

from scaling.loop import tick_cluster
from scaling.models import Decision
from tests.faults.cluster import (
    clear_faults,
    deployment,
    fleet,
    history,
    loop_writes,
    register,
    set_faults,
    spec_replicas,
    wait_for_pods,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUIET = {"kind": "constant", "rate_rps": 0.2, "input_mean": 100, "output_mean": 50}
MAX_AGE_S = 2.0
WINDOW_S = 3.0
TICK_S = 0.5


def test_no_scale_down_during_a_metrics_outage_nor_in_the_first_window_after(
    start_simulator, gpu_type, team_a
):
    url = start_simulator(fleet(deployment("team-a", "chat", replicas=4, load=QUIET)), speed=4.0)
    workload = register(
        url,
        team_a,
        "chat",
        gpu_type,
        max_metric_age_s=MAX_AGE_S,
        scale_down_stabilization_s=WINDOW_S,
    )
    wait_for_pods(url, "chat")
    # Busy before the outage (every pod reports 40 running requests): the loop holds at 4.
    set_faults(url, metric_values={"vllm:num_requests_running": 40})
    for _ in range(3):
        tick_cluster(workload.cluster_id)
        time.sleep(TICK_S)
    assert spec_replicas(url, "team-a", "chat") == 4
    mark = history(url)["last"]

    set_faults(url, metrics_down=True)  # down for longer than max_metric_age_s and the window
    down_until = time.monotonic() + MAX_AGE_S + WINDOW_S + 1.0
    while time.monotonic() < down_until:
        tick_cluster(workload.cluster_id)
        time.sleep(TICK_S)
    assert loop_writes(history(url, mark)["scales"]) == [], "scaled during the outage"
    workload.refresh_from_db()
    assert workload.status["outcome"] == "held"

    clear_faults(url)  # back, and quiet now: the engine will want 1 replica
    back = time.time()
    deadline = time.monotonic() + WINDOW_S + 6.0
    while time.monotonic() < deadline and not loop_writes(history(url, mark)["scales"]):
        tick_cluster(workload.cluster_id)
        time.sleep(TICK_S)
    writes = loop_writes(history(url, mark)["scales"])
    assert writes, "never scaled down once the metrics were fresh for a window"
    first = writes[0]
    assert first["to"] < first["from"]
    assert first["at"] - back >= WINDOW_S - TICK_S, (
        f"scaled {first['from']} -> {first['to']} {first['at'] - back:.1f} s after the metrics "
        f"returned, inside the first {WINDOW_S:.0f} s window"
    )


GAUGE_NONSENSE = [("NaN", "NaN"), (-3, "negative"), ("+Inf", "infinite")]


@pytest.mark.parametrize(("value", "why"), GAUGE_NONSENSE, ids=["nan", "negative", "inf"])
def test_a_nonsense_gauge_holds_and_says_why(start_simulator, gpu_type, team_a, value, why):
    url = start_simulator(fleet(deployment("team-a", "chat", replicas=3, load=QUIET)), speed=4.0)
    workload = register(url, team_a, "chat", gpu_type, scale_down_stabilization_s=0)
    wait_for_pods(url, "chat")
    set_faults(url, metric_values={"vllm:num_requests_running": value})
    mark = history(url)["last"]
    for _ in range(3):
        tick_cluster(workload.cluster_id)
        time.sleep(TICK_S)
    assert loop_writes(history(url, mark)["scales"]) == []
    workload.refresh_from_db()
    assert workload.status["outcome"] == "held"
    assert why in workload.status["reason"]
    assert spec_replicas(url, "team-a", "chat") == 3  # not zero, not the minimum
    assert not Decision.objects.filter(outcome="applied").exists()


@pytest.mark.parametrize("values", [[1.8e19], [5.0]], ids=["counter-1.8e19", "counter-backwards"])
def test_a_nonsense_counter_never_moves_the_loop(start_simulator, gpu_type, team_a, values):
    url = start_simulator(fleet(deployment("team-a", "chat", replicas=2, load=QUIET)), speed=4.0)
    workload = register(
        url, team_a, "chat", gpu_type, algorithm="predictive", max_replicas=8, cold_start_s=2.0
    )
    wait_for_pods(url, "chat")
    for _ in range(4):  # a steady history of real counters first
        tick_cluster(workload.cluster_id)
        time.sleep(TICK_S)
    before = spec_replicas(url, "team-a", "chat")
    mark = history(url)["last"]
    for value in values:
        counters = {"vllm:prompt_tokens_total": value, "vllm:generation_tokens_total": value}
        set_faults(url, metric_values=counters)
        for _ in range(2):
            tick_cluster(workload.cluster_id)
            time.sleep(TICK_S)
    writes = [(w["from"], w["to"]) for w in loop_writes(history(url, mark)["scales"])]
    assert writes == [], f"scaled on a nonsense counter: {writes}"
    assert spec_replicas(url, "team-a", "chat") == before
    workload.refresh_from_db()
    assert workload.status["outcome"] == "held"

"""The live what-if stays the engine's own answer while it is made fast for typing: the
engine's view of each stored tick is built once per tick set and signal window
(``scaling.whatif.observe``) and reused by the next edits, a policy asked again gets its
earlier answer, and each answer is still ``replay_signals`` on the stored ticks."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from scaling import signal_store, whatif
from scaling.backtest import replay_signals
from scaling.capacity import replica_capacity
from scaling.engine import OFFERED_WORK, PolicyParams, reads
from scaling.signals import SignalTick
from tests.dashboard.test_dashboard_pages import form_data

pytestmark = pytest.mark.django_db


def store_busy_load(workload, seconds: float, end: float, every: float = 5.0) -> None:
    """Busy and quiet spells with token rates and TTFT, as the loop records them."""
    for k in range(int(seconds / every)):
        t = end - seconds + k * every
        value = 14.0 if (k // 60) % 2 == 0 else 3.0
        tick = SignalTick(
            now=t,
            current=2,
            ready=2,
            metric=(t, value),
            metric_pods=2.0,
            prompt_tokens_per_s=900.0 * value,
            generation_tokens_per_s=80.0 * value,
            ttft_p95_s=0.2 + value / 100,
            queue_p95_s=value / 200,
        )
        signal_store.append_ticks([(workload, workload.loop_state.get("signals"), tick)])
    workload.save(update_fields=["loop_state"])


def expected(workload, policy, changes: dict) -> tuple[list[int], list[str]]:
    """``replay_signals`` itself on the stored ticks, under the edited policy."""
    edited = replace(policy.engine_params(), **changes)
    ticks = signal_store.load_ticks(workload, time.time() - 3600, time.time())
    if OFFERED_WORK in reads(edited):
        capacity = replica_capacity(
            workload.gpu_type.profile, workload.model_name, workload.gpus_per_replica, None
        )
        ticks = [replace(t, capacity=capacity) for t in ticks]
    decisions = replay_signals(edited, ticks)
    return [d.desired for d in decisions], [d.reason for d in decisions]


@pytest.mark.parametrize("algorithm", ["hpa", "kpa", "apa", "predictive"])
def test_edit_after_edit_each_answer_is_replay_signals(
    client, team_a, cluster, gpu_type, make_workload, make_user, monkeypatch, algorithm
):
    workload = make_workload(team_a, cluster, gpu_type, f"fast-{algorithm}")
    policy = workload.policy
    store_busy_load(workload, 1200, time.time())
    client.force_login(make_user("operator", team_a, "operator"))
    built: list[PolicyParams] = []
    real_observe = whatif.observe

    def counted(params: PolicyParams, ticks: list[SignalTick]) -> whatif.Observed:
        built.append(params)
        return real_observe(params, ticks)

    monkeypatch.setattr(whatif, "observe", counted)
    edits = [
        {"target": 5.0},
        {"target": 7.0},
        {"target": 7.0, "max_replicas": 3},
        {"target": 5.0},  # asked before: the earlier answer
    ]
    for changes in edits:
        data = {**form_data(policy, algorithm=algorithm, **changes), "window": "3600"}
        body = client.post(f"/workloads/{workload.pk}/whatif/", data).json()
        wanted, reasons = expected(workload, policy, {"algorithm": algorithm, **changes})
        assert body["whatif"] == wanted
        assert body["reasons"] == reasons
    # The engine's view of the ticks was built once: the edits did not change the signal
    # window or the signals read.
    assert len(built) == 1


def test_a_new_tick_is_in_the_next_answer(
    client, team_a, cluster, gpu_type, make_workload, make_user
):
    workload = make_workload(team_a, cluster, gpu_type, "fast-new-tick")
    policy = workload.policy
    now = time.time()
    store_busy_load(workload, 600, now - 5)
    client.force_login(make_user("operator", team_a, "operator"))
    url = f"/workloads/{workload.pk}/whatif/"
    data = {**form_data(policy, target=5), "window": "3600"}
    first = client.post(url, data).json()
    # The loop records one more tick (a burst); the same edit is asked again.
    burst = SignalTick(now=now, current=2, ready=2, metric=(now, 60.0), metric_pods=2.0)
    signal_store.append_ticks([(workload, workload.loop_state.get("signals"), burst)])
    workload.save(update_fields=["loop_state"])
    second = client.post(url, data).json()
    assert len(second["t"]) == len(first["t"]) + 1
    assert second["whatif"] == expected(workload, policy, {"target": 5.0})[0]
    assert second["whatif"][-1] > first["whatif"][-1]

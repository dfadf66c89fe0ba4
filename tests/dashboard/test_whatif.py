"""The live what-if: an edited policy replayed on the workload's own stored signals."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from scaling import signal_store
from scaling.backtest import replay_signals
from scaling.models import Decision, ScalingPolicy
from scaling.signal_store import SignalChunk
from scaling.signals import SignalTick
from tests.dashboard.test_dashboard_pages import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(team_a, cluster, gpu_type, make_workload, make_user):
    return {
        "a": make_workload(team_a, cluster, gpu_type, "chat-a"),
        "viewer": make_user("viewer", team_a, "viewer"),
        "operator": make_user("operator", team_a, "operator"),
    }


def store_load(workload, seconds: float, every: float = 5.0) -> list[SignalTick]:
    """A busy-then-quiet load on 2 replicas, recorded as the loop records it, ending now."""
    now = time.time()
    ticks = []
    for k in range(int(seconds / every)):
        t = now - seconds + k * every
        busy = (k // 60) % 2 == 0
        ticks.append(
            SignalTick(
                now=t, current=2, ready=2, metric=(t, 14.0 if busy else 3.0), metric_pods=2.0
            )
        )
    for tick in ticks:
        previous = workload.loop_state.get("signals")
        signal_store.append_ticks([(workload, previous, tick)])
    workload.save(update_fields=["loop_state"])  # the last minute is in the loop state
    return ticks


def test_the_whatif_is_replay_signals_on_the_stored_series(client, setup):
    workload, policy = setup["a"], setup["a"].policy
    stored = store_load(workload, 1800)
    client.force_login(setup["operator"])
    url = f"/workloads/{workload.pk}/whatif/"
    body = client.post(url, {**form_data(policy, target=5), "window": "3600"}).json()
    edited = replace(policy.engine_params(), target=5.0)
    expected = replay_signals(edited, stored)
    assert body["t"] == pytest.approx([t.now for t in stored])
    assert body["whatif"] == [d.desired for d in expected]
    assert body["observed"] == [2] * len(stored)
    assert max(body["whatif"]) > 2  # the busy spells want more at a lower target
    # A 15-minute window is the tail of the same series.
    short = client.post(url, {**form_data(policy, target=5), "window": "900"}).json()
    assert len(short["t"]) < len(body["t"]) and short["t"][-1] == body["t"][-1]


def test_scale_events_and_gpu_hours_of_both_curves(client, setup):
    workload, policy = setup["a"], setup["a"].policy
    store_load(workload, 1800)
    client.force_login(setup["operator"])
    body = client.post(
        f"/workloads/{workload.pk}/whatif/", {**form_data(policy, target=5), "window": "3600"}
    ).json()
    observed, whatif = body["summary"]["observed"], body["summary"]["whatif"]
    # 2 replicas x 1 GPU for the half hour recorded (less the last tick's step).
    assert observed["scale_events"] == 0
    assert observed["gpu_hours"] == pytest.approx(1.0, abs=0.01)
    changes = sum(1 for a, b in zip(body["whatif"], body["whatif"][1:], strict=False) if a != b)
    assert whatif["scale_events"] == changes > 0
    assert whatif["gpu_hours"] != observed["gpu_hours"]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        # The save's own validation (the model's full_clean), word for word.
        ({"target": -1}, "target", "target must be greater than 0"),
        ({"min_replicas": 9, "max_replicas": 2}, "max_replicas", "replicas"),
        ({"target": "1e999"}, "target", ""),
        ({"window": "7"}, "window", "1 hour"),
        ({"metric": "vllm:num_requests_waiting"}, "metric", "stored signal history"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    client, setup, changes, field, words
):
    workload, policy = setup["a"], setup["a"].policy
    store_load(workload, 600)
    before = (ScalingPolicy.objects.get(pk=policy.pk).version, SignalChunk.objects.count())
    client.force_login(setup["operator"])
    data = {**form_data(policy), "window": "3600", **changes}
    response = client.post(f"/workloads/{workload.pk}/whatif/", data)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in errors, errors
    assert words in " ".join(e["message"] for e in errors[field])
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, SignalChunk.objects.count()) == before
    assert stored.target == policy.target and not Decision.objects.exists()


def test_viewers_and_other_tenants_get_no_whatif(client, setup, make_user, team_b):
    workload, policy = setup["a"], setup["a"].policy
    url = f"/workloads/{workload.pk}/whatif/"
    client.force_login(setup["viewer"])
    assert client.post(url, form_data(policy)).status_code == 403
    client.force_login(make_user("stranger", team_b, "operator"))
    assert client.post(url, form_data(policy)).status_code == 404


def test_with_no_history_the_whatif_is_empty_not_an_error(client, setup):
    client.force_login(setup["operator"])
    body = client.post(f"/workloads/{setup['a'].pk}/whatif/", form_data(setup["a"].policy)).json()
    assert body["t"] == []
    empty = body["summary"]["whatif"]
    assert (empty["scale_events"], empty["gpu_hours"], empty["cost_per_hour"]) == (0, 0, None)

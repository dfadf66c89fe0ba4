"""The signal history store: what the loop records each tick, kept bounded, downsampled past an
hour and pruned past its retention. Times are injected; nothing sleeps."""

import json
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from scaling import signal_store
from scaling.models import ScalingPolicy, Workload
from scaling.signal_store import CHUNK_S, MAX_TICKS_PER_CHUNK, SignalChunk, load_ticks
from scaling.signals import SignalTick

T0 = 1_800_000_000.0  # an hour boundary (divisible by 3600)


@pytest.fixture
def workload(make_workload, team_a, cluster, gpu_type) -> Workload:
    return make_workload(team_a, cluster, gpu_type, "chat")


def tick(now: float, current: int = 2, metric: float | None = 4.0) -> SignalTick:
    return SignalTick(
        now=now,
        current=current,
        ready=current,
        metric=None if metric is None else (now - 1.0, metric),
        metric_pods=float(current),
        ttft_p95_s=0.25,
        queue_p95_s=0.05,
    )


def record(workloads: list[Workload], ticks: list[SignalTick]) -> None:
    """What the loop's _record does for each tick: append, then keep the open chunk."""
    for t in ticks:
        rows: list[tuple[Any, Any, SignalTick]] = []
        for w in workloads:
            previous = (w.loop_state or {}).get("signals")
            w.loop_state = {}
            rows.append((w, previous, t))
        signal_store.append_ticks(rows)


def test_every_tick_is_kept_in_few_rows_and_read_back_as_recorded(workload):
    ticks = [
        tick(T0 + 5 * k, current=1 + k % 3, metric=None if k == 7 else k / 2) for k in range(360)
    ]
    record([workload], ticks)
    rows = list(SignalChunk.objects.filter(workload=workload))
    # 30 minutes of a 5 s loop: one row per 5-minute chunk (+1 where the phase splits one).
    assert len(rows) <= 7
    assert sum(r.ticks for r in rows) + workload.loop_state["signals"].get("b", 0) == 360
    assert all(r.end_s - r.start_s < CHUNK_S for r in rows)
    assert load_ticks(workload, T0, T0 + 3600) == ticks
    assert load_ticks(workload, T0 + 100, T0 + 200) == [
        t for t in ticks if 100 <= t.now - T0 <= 200
    ]


def test_rows_written_before_the_queueing_signal_still_load(workload):
    old = [T0, 2, 2, 0, T0 - 1.0, 4.0, 2.0, None, None, 0.25]  # no queueing delay field
    SignalChunk.objects.create(
        workload=workload, resolution="tick", start_s=T0, end_s=T0, ticks=1,
        data=json.dumps(old) + ",",
    )  # fmt: skip
    assert load_ticks(workload, T0 - 1, T0 + 1) == [replace(tick(T0), queue_p95_s=None)]
    assert signal_store.minute_means([old])[0][-1] is None


def test_a_fast_loop_does_not_grow_a_row_past_its_bound(workload):
    record([workload], [tick(T0 + 0.5 * k) for k in range(1000)])
    rows = SignalChunk.objects.filter(workload=workload)
    assert max(r.ticks for r in rows) <= MAX_TICKS_PER_CHUNK
    assert sum(r.ticks for r in rows) + workload.loop_state["signals"].get("b", 0) == 1000


def test_many_workloads_open_their_rows_on_different_ticks(
    make_workload, team_a, cluster, gpu_type
):
    workloads = [make_workload(team_a, cluster, gpu_type, f"w{i}") for i in range(40)]
    record(workloads, [tick(T0 + 5 * k) for k in range(240)])  # 20 minutes
    starts = {r.start_s for r in SignalChunk.objects.exclude(start_s=T0)}
    assert len(starts) > 20  # not all at the same chunk boundary


def test_beyond_an_hour_ticks_become_minute_means_and_past_retention_they_go(workload):
    two_hours = [
        tick(T0 + 5 * k, current=2 if k < 700 else 3, metric=float(k % 12)) for k in range(1440)
    ]
    record([workload], two_hours)
    now = T0 + 7200
    assert signal_store.downsample(now) > 0
    fine = SignalChunk.objects.filter(workload=workload, resolution="tick")
    assert all(r.end_s >= now - 3600 for r in fine)
    coarse = list(SignalChunk.objects.filter(workload=workload, resolution="minute"))
    assert coarse and all(r.ticks <= 60 for r in coarse)
    replayed = load_ticks(workload, T0, now)
    old = [t for t in replayed if t.now < now - 3600 - CHUNK_S]
    # One point per minute: the last tick's time and replica count, the mean of the metric
    # (0..11 over the minute's 12 ticks), so a minute mean is not a sample.
    assert [t.now for t in old] == [T0 + 60 * m + 55 for m in range(len(old))]
    assert {t.metric[1] for t in old if t.metric} == {5.5}
    assert {t.metric[0] - t.now for t in old if t.metric} == {-1.0}
    assert old[0].current == 2 and old[0].ttft_p95_s == pytest.approx(0.25)
    recent = [t for t in replayed if t.now >= now - 3600]
    assert [t.now for t in recent] == [t.now for t in two_hours if t.now >= now - 3600]
    # Folding again is idempotent on what is already folded; what is left is an hour.
    signal_store.downsample(now)
    assert load_ticks(workload, T0, now) == replayed
    with override_settings(SIGNAL_HISTORY_RETENTION_S=3600):
        assert signal_store.prune(now + 3600) > 0
    assert not SignalChunk.objects.filter(workload=workload).exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_loop_records_each_observed_tick(start_simulator, gpu_type, team_a):
    from scaling.loop import tick_cluster
    from tests.scaling.test_loop import CHAT, Clock, fleet, register, ticks_until

    url = start_simulator(fleet(CHAT))
    cluster, workload = register(url, gpu_type, team_a)
    clock = Clock()

    def metric_recorded() -> bool:
        workload.refresh_from_db()
        recorded = load_ticks(workload, 0, clock.now() + 1)
        return bool(recorded) and recorded[-1].metric is not None

    count = ticks_until(cluster, metric_recorded, clock=clock, every=5.0)  # the pod warms up
    ticks = load_ticks(workload, 0, clock.now() + 1)
    assert len(ticks) == count
    assert {t.current for t in ticks} == {1}  # the Deployment's replicas
    workload.refresh_from_db()
    state = workload.loop_state["signals"]
    assert state.get("b", 0) + state.get("n", 0) >= 1  # buffered, or flushed to a row
    assert workload.public_status is not None  # the loop state is private; status still public
    ScalingPolicy.objects.filter(workload=workload).update(mode="off")
    tick_cluster(cluster.pk, now=clock.now())  # no active policy: no signal, the chunk kept
    workload.refresh_from_db()
    assert len(load_ticks(workload, 0, clock.now() + 1)) == count
    workload.refresh_from_db()
    assert "signals" in workload.loop_state


def test_the_periodic_task_folds_and_prunes_by_the_clock(workload, settings):
    import time

    from scaling.tasks import compact_signal_history

    assert "compact-signal-history" in settings.CELERY_BEAT_SCHEDULE
    now = time.time()
    record([workload], [tick(now - 3 * 3600 + 5 * k) for k in range(720)])  # 3 h to 2 h ago
    done = compact_signal_history()
    assert done["folded"] >= 12 and done["pruned"] == 0  # an hour of 5-minute rows
    assert set(SignalChunk.objects.values_list("resolution", flat=True)) == {"minute"}
    settings.SIGNAL_HISTORY_RETENTION_S = 3600
    assert compact_signal_history()["pruned"] >= 1
    assert not SignalChunk.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_hpa_workloads_history_keeps_offered_work_and_latency_for_the_what_if(
    start_simulator, gpu_type, team_a
):
    """hpa reads one metric, but the history keeps offered work, TTFT and queueing delay too:
    an operator trying predictive in the what-if gets it replayed on the work the workload
    saw (not the metric over a target), and an SLO estimate."""
    from scaling.loop import tick_cluster  # noqa: F401  (ticks_until drives it)
    from scaling.whatif import signal_whatif
    from tests.scaling.test_loop import CHAT, Clock, fleet, register, ticks_until

    busy = {"kind": "constant", "rate_rps": 6.0, "input_mean": 800, "output_mean": 120}
    url = start_simulator(fleet(CHAT | {"load": busy}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, slo_ttft_p95_s=2.0)
    clock = Clock()

    def latency_recorded() -> bool:
        workload.refresh_from_db()
        ticks = load_ticks(workload, 0, clock.now() + 1)
        return any(
            t.prompt_tokens_per_s
            and t.generation_tokens_per_s
            and t.ttft_p95_s is not None
            and t.queue_p95_s is not None
            for t in ticks
        )

    ticks_until(cluster, latency_recorded, clock=clock, every=5.0)
    edited = ScalingPolicy.objects.get(workload=workload)
    edited.algorithm = "predictive"
    answer = signal_whatif(workload, edited, 900.0, clock.now() + 1)
    assert answer["slo"] is not None, answer["slo_note"]
    # From the first tick with offered work on, predictive sizes by it.
    assert "over target (fallback)" not in answer["reasons"][-1], answer["reasons"][-1]


def fresh(workload: Workload, since: float, until: float) -> list[SignalTick]:
    """What a process that has parsed nothing before reads."""
    signal_store._PARSED.entries.clear()
    return signal_store.load_window(workload, since, until)[1]


def test_a_window_read_again_parses_nothing_and_any_change_changes_its_identity(workload):
    record([workload], [tick(T0 + 5 * k, metric=k % 7) for k in range(300)])
    until = T0 + 7200
    first_id, first = signal_store.load_window(workload, T0, until)
    with CaptureQueriesContext(connection) as queries:
        again_id, again = signal_store.load_window(workload, T0, until)
    assert (again_id, again) == (first_id, first)
    # One query for the rows' identity; their text is not read again.
    assert len(queries) == 1 and "data" not in queries[0]["sql"]
    # A narrower window is another identity (and the tail of the same ticks).
    tail_id, tail = signal_store.load_window(workload, T0 + 600, until)
    assert tail_id != first_id and tail == [t for t in first if t.now >= T0 + 600]
    # New ticks, in the buffer and then appended to a row already parsed, are read.
    for k in range(300, 340):
        record([workload], [tick(T0 + 5 * k, metric=k % 7)])
        new_id, new = signal_store.load_window(workload, T0, until)
        assert new_id != first_id and new == fresh(workload, T0, until)
        assert new[-1].now == T0 + 5 * k
        first_id = new_id
    # Folding into minute means (rows deleted, an hour's row written) is another identity.
    signal_store.downsample(T0 + 5 * 340 + 3600)
    folded_id, folded = signal_store.load_window(workload, T0, until)
    assert folded_id != first_id and folded == fresh(workload, T0, until)
    assert len(folded) < 340

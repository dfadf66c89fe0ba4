"""The control plane's own history of the signals its policies read, per workload.

Exporters keep no history and Prometheus is optional, so the loop records what it observed
of each workload every tick (the series ``scaling.signals.SignalHistory`` holds: the policy
metric and the pods it averaged over, prompt and generation tokens/s, TTFT p95, queueing
delay p95, and the replica counts), for the what-if replay (``dashboard.whatif``) of a
workload's own load.

Storage, designed for 1,000 workloads on a 5 s loop:

1. One row (``SignalChunk``) per workload per chunk of up to ``CHUNK_S`` seconds (at most
   ``MAX_TICKS_PER_CHUNK`` ticks). Its ``data`` is text: one compact JSON array per tick
   (``FIELDS``), each followed by a comma, so ticks are appended in SQL (``data || text``,
   standard on PostgreSQL and SQLite): no read, no row per tick.
2. A workload's ticks are buffered for up to a minute in its ``loop_state["signals"]``
   (written each tick anyway, by the loop's bulk ``update_columns``), then flushed to its
   chunk row by one ``UPDATE ... FROM (VALUES ...)`` for all workloads flushing that tick,
   or one ``bulk_create`` where a new row opens. A per-workload phase staggers the minutes
   and the chunks, so a tick touches ~1/12 of the rows. The what-if reads rows and buffer.
3. Beyond ``FINE_S`` (an hour) ``downsample`` folds tick rows into one row per workload and
   hour of 1-minute means; ``prune`` deletes rows older than the retention
   (``SIGNAL_HISTORY_RETENTION_S``, default a day). Both run in the periodic Celery task
   ``scaling.tasks.compact_signal_history`` (every 10 minutes). A workload keeps at most
   ~14 tick rows and one minute row per retained hour.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction

from scaling.signals import SignalTick

CHUNK_S = 300
FLUSH_S = 60  # a workload's ticks are buffered in its loop state for up to a minute
MAX_BUFFERED = 30  # ... or this many ticks (a fast loop)
MAX_TICKS_PER_CHUNK = 120  # a 2.5 s loop fills a chunk; a faster one opens rows sooner
FINE_S = 3600.0
COARSE_STEP_S = 60.0
# One tick, in this order. Replica counts are step functions: downsampled, they keep the
# last value of the minute; every other field is the minute's mean (None when all None).
FIELDS = (
    "t",
    "current",
    "ready",
    "warming",
    "metric_t",
    "metric",
    "pods",
    "prompt",
    "generation",
    "ttft",
    "queue",  # queueing delay p95 (s); rows written before it have one field less
)
COUNTS = {"current", "ready", "warming"}
LAST_IN_MINUTE = COUNTS | {"t", "metric_t"}


class SignalChunk(models.Model):
    """Some minutes of one workload's signals: ``ticks`` lines of ``data`` (see module doc)."""

    class Resolution(models.TextChoices):
        TICK = "tick", "every tick"
        MINUTE = "minute", "1-minute means"

    workload = models.ForeignKey(
        "scaling.Workload", on_delete=models.CASCADE, related_name="signal_chunks"
    )
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    start_s = models.FloatField(help_text="Unix time of the first tick")
    end_s = models.FloatField(help_text="Unix time of the last tick")
    ticks = models.PositiveIntegerField(default=0)
    data = models.TextField(default="", help_text="One JSON array per tick, each ending in ','")

    class Meta:
        app_label = "scaling"
        indexes = [models.Index(fields=["workload", "end_s"]), models.Index(fields=["end_s"])]

    def __str__(self) -> str:
        return f"{self.workload_id} {self.resolution} {self.start_s:.0f}+{self.ticks}"

    def rows(self) -> list[list[Any]]:
        return json.loads("[" + self.data.rstrip(",") + "]") if self.data else []


@dataclass(frozen=True)
class StoredTick:
    """One stored tick: the engine's inputs that a replay needs (no per-pod samples)."""

    row: tuple[Any, ...]

    def signal_tick(self) -> SignalTick:
        padded = (*self.row, *(None,) * (len(FIELDS) - len(self.row)))
        t, current, ready, warming, metric_t, metric, pods, prompt, gen, ttft, queue = padded
        return SignalTick(
            now=t,
            current=int(current),
            ready=int(ready),
            warming=int(warming),
            metric=None if metric is None else (metric_t, metric),
            metric_pods=pods,
            prompt_tokens_per_s=prompt,
            generation_tokens_per_s=gen,
            ttft_p95_s=ttft,
            queue_p95_s=queue,
        )


def line(tick: SignalTick) -> str:
    """The stored text of one tick (``FIELDS``), with its trailing comma."""
    metric_t, metric = tick.metric if tick.metric is not None else (None, None)
    row = [
        tick.now,
        tick.current,
        tick.ready,
        tick.warming,
        metric_t,
        metric,
        tick.metric_pods,
        tick.prompt_tokens_per_s,
        tick.generation_tokens_per_s,
        tick.ttft_p95_s,
        tick.queue_p95_s,
    ]
    return json.dumps([_finite(v) for v in row], separators=(",", ":")) + ","


def _finite(value: float | int | None) -> float | int | None:
    return value if value is None or math.isfinite(value) else None


def _slot(workload_id: int, now: float, length: float) -> int:
    phase = (workload_id * 7919) % int(length)
    return math.floor((now + phase) / length)


def append_ticks(observed: Sequence[tuple[Any, dict[str, Any] | None, SignalTick]]) -> None:
    """Record each (workload, its ``loop_state["signals"]`` of the previous tick, tick) and
    keep the new state in the workload's in-memory ``loop_state["signals"]`` (the caller
    writes it with the rest of the loop state).

    1. The tick's line joins the workload's buffer (text in the loop state, written anyway).
    2. Once the buffer's first tick is in another minute (a per-workload phase staggers the
       minutes) or the buffer holds ``MAX_BUFFERED`` ticks, the buffer is flushed: appended
       to the open chunk when it is of the same ``CHUNK_S`` slot and has room (one
       ``UPDATE ... FROM (VALUES ...)`` for all of them), else as a new row (one
       ``bulk_create``). So a tick touches ~1/12 of the chunk rows, not all of them.
    """
    opening: list[tuple[Any, dict[str, Any], SignalChunk]] = []
    appending: list[tuple[Any, dict[str, Any]]] = []
    for workload, previous, tick in observed:
        state = dict(previous) if isinstance(previous, dict) else {}
        buffer, count = str(state.get("buffer", "")) + line(tick), int(state.get("b", 0)) + 1
        since = float(state.get("since", tick.now)) if count > 1 else tick.now
        state.update(buffer=buffer, b=count, since=since)
        workload.loop_state["signals"] = state
        pk = workload.pk
        if count < MAX_BUFFERED and _slot(pk, since, FLUSH_S) == _slot(pk, tick.now, FLUSH_S):
            continue
        slot = _slot(pk, since, CHUNK_S)
        if state.get("slot") == slot and int(state.get("n", 0)) + count <= MAX_TICKS_PER_CHUNK:
            appending.append((workload, state))
            continue
        row = SignalChunk(
            workload_id=pk,
            resolution=SignalChunk.Resolution.TICK,
            start_s=since,
            end_s=tick.now,
            ticks=count,
            data=buffer,
        )
        opening.append((workload, state, row))
    SignalChunk.objects.bulk_create([row for _, _, row in opening])
    for workload, state, row in opening:
        workload.loop_state["signals"] = {
            "id": row.pk,
            "slot": _slot(workload.pk, state["since"], CHUNK_S),
            "n": state["b"],
        }
    _append_lines(
        [(state["id"], state["buffer"], state["b"], _last_t(state)) for _, state in appending]
    )
    for workload, state in appending:
        workload.loop_state["signals"] = {
            "id": state["id"],
            "slot": state["slot"],
            "n": int(state["n"]) + state["b"],
        }


def _last_t(state: dict[str, Any]) -> float:
    last = state["buffer"].rstrip(",").rsplit("[", 1)[1]
    return float(last.split(",", 1)[0])


def _append_lines(lines: list[tuple[int, str, int, float]]) -> None:
    """(chunk id, text, tick count, last tick time) appended to each chunk, in one statement
    per 1,000 chunks."""
    if not lines:
        return
    typed = connection.vendor == "postgresql"
    cast = (
        "(CAST(%s AS integer), CAST(%s AS text), CAST(%s AS integer), CAST(%s AS double precision))"
    )
    row = cast if typed else "(%s, %s, %s, %s)"
    table = connection.ops.quote_name(SignalChunk._meta.db_table)
    for start in range(0, len(lines), 1000):
        batch = lines[start : start + 1000]
        params: list[Any] = [value for item in batch for value in item]
        values = ", ".join([row] * len(batch))
        sql = (
            f"UPDATE {table} SET data = {table}.data || v.column2, "
            f"ticks = {table}.ticks + v.column3, end_s = v.column4 "
            f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def load_ticks(workload: Any, since: float, until: float) -> list[SignalTick]:
    """The stored ticks of one workload from ``since`` to ``until``, in time order: minute
    means where the history was downsampled, then every tick, the last from the buffer in
    the workload's loop state (as loaded)."""
    return load_window(workload, since, until)[1]


def load_window(workload: Any, since: float, until: float) -> tuple[Hashable, list[SignalTick]]:
    """``load_ticks``, and a cheap identity of the ticks read: equal identities, equal ticks.

    1. One query for the identity of the rows in the window (id, tick count, first and last
       tick time: a row only ever grows by appended ticks, and a fold into an hour's row
       changes its count or its last time; ids are never reused: AUTOINCREMENT on SQLite, a
       sequence on PostgreSQL), without their text.
    2. The rows not parsed before in this process (``_PARSED``, by that identity) are read
       and parsed in one more query; the others are not read again while the operator types.
    3. The identity is the rows', the buffer's text and the part of the merged series the
       window keeps (its first and last time, its length): no hashing of every tick."""
    rows = list(
        SignalChunk.objects.filter(
            workload_id=workload.pk, end_s__gte=since, start_s__lte=until
        ).values_list("id", "ticks", "start_s", "end_s")
    )
    parsed: dict[tuple[Any, ...], list[SignalTick]] = {}
    missing = []
    for row in rows:
        found = _PARSED.get(row)
        if found is None:
            missing.append(row[0])
        else:
            parsed[row] = found
    if missing:
        fields = ("id", "ticks", "start_s", "end_s", "data")
        for *identity, data in SignalChunk.objects.filter(pk__in=missing).values_list(*fields):
            row = tuple(identity)
            parsed[row] = _parse(data)
            _PARSED.put(row, parsed[row])
    state = (workload.loop_state or {}).get("signals") or {}
    buffer = str(state.get("buffer", "")) if isinstance(state, dict) else ""
    merged = sorted(
        (
            t
            # Rows in id order, then the buffer: of two ticks at one time the first is kept.
            for ticks in [*(parsed[row] for row in sorted(parsed)), _parse(buffer)]
            for t in ticks
            if since <= t.now <= until
        ),
        key=lambda t: t.now,
    )
    kept: list[SignalTick] = []
    for tick in merged:
        if not kept or tick.now > kept[-1].now:
            kept.append(tick)
    span = (kept[0].now, kept[-1].now) if kept else None
    return (tuple(sorted(parsed)), buffer, span, len(kept)), kept


def _parse(data: str) -> list[SignalTick]:
    """The ticks of a row's text (rows of an older or unknown width skipped)."""
    rows = json.loads("[" + data.rstrip(",") + "]") if data else []
    return [
        StoredTick(tuple(r)).signal_tick() for r in rows if len(FIELDS) - 1 <= len(r) <= len(FIELDS)
    ]


class _Parsed:
    """The parsed ticks of the last ``size`` rows read, per process, by row identity."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[Any, ...], list[SignalTick]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[SignalTick] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], ticks: list[SignalTick]) -> None:
        with self.lock:
            self.entries[key] = ticks
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


# 6 h of one workload is ~14 tick rows and 6 minute rows; 256 rows (~0.25 M ticks at most,
# a few tens of MB) keep a dozen workloads' windows parsed per server process.
_PARSED = _Parsed(256)


# --- compaction ----------------------------------------------------------------------------------


def minute_means(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows of ``FIELDS`` folded into one per minute: the last replica counts and times, the
    mean of every other known value."""
    minutes: dict[int, list[Sequence[Any]]] = defaultdict(list)
    for r in rows:
        minutes[math.floor(r[0] / COARSE_STEP_S)].append(r)
    folded = []
    for key in sorted(minutes):
        group = sorted(minutes[key], key=lambda r: r[0])
        out: list[Any] = []
        for i, name in enumerate(FIELDS):
            known = [r[i] for r in group if i < len(r) and r[i] is not None]
            if name in LAST_IN_MINUTE:
                out.append(known[-1] if known else None)
            else:
                out.append(sum(known) / len(known) if known else None)
        folded.append(out)
    return folded


def downsample(now: float) -> int:
    """Fold tick rows that ended more than ``FINE_S`` ago into per-hour rows of minute
    means (merged into that hour's row when there is one); returns the tick rows folded."""
    old = list(
        SignalChunk.objects.filter(resolution=SignalChunk.Resolution.TICK, end_s__lt=now - FINE_S)
    )
    if not old:
        return 0
    by_workload: dict[int, list[SignalChunk]] = defaultdict(list)
    for chunk in old:
        by_workload[chunk.workload_id].append(chunk)
    with transaction.atomic():
        for workload_id, chunks in by_workload.items():
            by_hour: dict[int, list[list[Any]]] = defaultdict(list)
            for r in (r for c in chunks for r in c.rows()):
                by_hour[math.floor(r[0] / 3600.0)].append(r)
            for hour, rows in by_hour.items():
                _fold(workload_id, hour, rows)
        SignalChunk.objects.filter(pk__in=[c.pk for c in old]).delete()
    return len(old)


def _fold(workload_id: int, hour: int, rows: list[list[Any]]) -> None:
    """Merge ``rows`` (ticks of one hour) into that hour's row of minute means."""
    start, end = hour * 3600.0, (hour + 1) * 3600.0
    target = SignalChunk.objects.filter(
        workload_id=workload_id,
        resolution=SignalChunk.Resolution.MINUTE,
        start_s__gte=start,
        start_s__lt=end,
    ).first()
    if target is not None:
        rows = rows + target.rows()
    means = minute_means(rows)
    data = "".join(json.dumps(r, separators=(",", ":")) + "," for r in means)
    target = target or SignalChunk(
        workload_id=workload_id, resolution=SignalChunk.Resolution.MINUTE
    )
    target.start_s, target.end_s = means[0][0], means[-1][0]
    target.ticks, target.data = len(means), data
    target.save()


def prune(now: float) -> int:
    """Delete rows whose last tick is older than the retention; returns how many."""
    cutoff = now - float(settings.SIGNAL_HISTORY_RETENTION_S)
    deleted, _ = SignalChunk.objects.filter(end_s__lt=cutoff).delete()
    return deleted

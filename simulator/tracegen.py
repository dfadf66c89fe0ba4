"""Synthetic request traces: a spec (:mod:`simulator.tracespec`) and a seed -> requests.

Pure Python, no Django. ``generate(spec, seed)`` returns requests in arrival order;
``write_trace`` writes them as JSON lines (``timestamp`` ms from start, ``input_length``,
``output_length`` and, when the spec has sessions, ``hash_ids``: one id per 512-token block
of the prompt, equal ids for equal leading blocks, as Mooncake's published traces have them),
the format ``simulator.traces`` reads. Same spec and seed, byte-identical file.

How a trace is made:

1. Arrival times: a non-homogeneous Poisson process with the spec's rate function, by
   thinning (Lewis and Shedler 1979): candidates from a homogeneous process at the rate's
   upper bound, each kept with probability rate(t) / bound. On/off processes draw their
   switch times first, from their own random stream.
2. Each arrival is, in order: the next turn of a session whose think time has passed (the
   earliest due first), else with probability ``p_new`` the first turn of a new session, else
   a single request. ``p_new`` is solved so that ``sessions.share`` of all requests are
   session turns (a session of T turns takes T arrivals, one of which is its start).
3. Sizes: the request's class is drawn by weight; lengths are drawn from its lognormal or
   Pareto and clipped to [min, max] (clipping, not resampling: the Azure code trace has the
   same mass at its cap). A session keeps its class; a later turn's prompt is the previous
   prompt + the previous output + a new message.

Separate random streams (arrivals, on/off switches, sizes, sessions) keep, say, a change to
the sessions from moving the arrival times. The regimes (``REGIMES``) are specs shipped in
``simulator/regimes/``; docs/traces.md says what each is shaped on.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

from .tracespec import (
    Arrival,
    Diurnal,
    FlashCrowd,
    IdleBurst,
    LogNormal,
    OnOff,
    Piecewise,
    Poisson,
    Ramp,
    RequestClass,
    Sessions,
    Size,
    SpecError,
    TraceSpec,
    parse_spec,
)

BLOCK_TOKENS = 512
REGIME_DIR = Path(__file__).resolve().parent / "regimes"
REGIMES = tuple(sorted(p.stem for p in REGIME_DIR.glob("*.json")))
_NORMAL = NormalDist()

RateFn = Callable[[float], float]


@dataclass(frozen=True, slots=True)
class TraceRequest:
    arrival_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] | None = None


def load_spec(path: str | Path) -> TraceSpec:
    """A spec from a JSON file; SpecError for a file that is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not JSON: {exc}") from exc
    return parse_spec(data)


def regime(name: str) -> TraceSpec:
    """The named regime's spec (``REGIMES`` lists them)."""
    if name not in REGIMES:
        raise SpecError(f"unknown regime {name!r}; the regimes are {', '.join(REGIMES)}")
    return load_spec(REGIME_DIR / f"{name}.json")


def generate(spec: TraceSpec, seed: int, duration_s: float | None = None) -> list[TraceRequest]:
    """The requests of ``spec`` over ``duration_s`` (default the spec's; a shorter one cuts
    the same trace short), deterministic by ``seed``."""
    end = spec.duration_s if duration_s is None else min(duration_s, spec.duration_s)
    rate, bound = compile_arrival(spec.arrival, end, random.Random(f"{seed}:switches"))
    times = thin(rate, bound, end, random.Random(f"{seed}:arrivals"))
    sizes = random.Random(f"{seed}:sizes")
    if spec.sessions is None:
        picks = [_pick_class(spec.classes, sizes) for _ in times]
        return [
            TraceRequest(t, draw(c.input, sizes), draw(c.output, sizes))
            for t, c in zip(times, picks, strict=True)
        ]
    return _with_sessions(spec, spec.sessions, times, sizes, random.Random(f"{seed}:sessions"))


# --- arrivals ---------------------------------------------------------------------------


def thin(rate: RateFn, bound: float, end: float, rng: random.Random) -> list[float]:
    """Arrival times in [0, end) of a Poisson process of intensity ``rate`` <= ``bound``."""
    times: list[float] = []
    if bound <= 0:
        return times
    t = 0.0
    while True:
        t += _exponential(rng, bound)
        if t >= end:
            return times
        if rng.random() * bound < rate(t):
            times.append(t)


def compile_arrival(arrival: Arrival, end: float, rng: random.Random) -> tuple[RateFn, float]:
    """(rate function of t, an upper bound of it on [0, end))."""
    if isinstance(arrival, Poisson):
        r = arrival.rate
        return (lambda t: r), r
    if isinstance(arrival, OnOff):
        return _onoff(arrival, end, rng)
    if isinstance(arrival, Diurnal):
        return _diurnal(arrival), arrival.max_rate
    if isinstance(arrival, Ramp):
        return _ramp(arrival, end), max(arrival.from_rate, arrival.to_rate)
    if isinstance(arrival, FlashCrowd):
        return _flash(arrival), arrival.base_rate * arrival.factor
    if isinstance(arrival, IdleBurst):
        return _idle_burst(arrival), max(arrival.idle_rate, arrival.burst_rate)
    if isinstance(arrival, Piecewise):
        return _piecewise(arrival, end, rng)
    parts = [compile_arrival(p, end, rng) for p in arrival.processes]
    return (lambda t: sum(fn(t) for fn, _ in parts)), sum(b for _, b in parts)


def _onoff(a: OnOff, end: float, rng: random.Random) -> tuple[RateFn, float]:
    # The first period is on with the stationary probability, so a trace cut anywhere looks
    # like the same process.
    on = rng.random() < a.mean_on_s / (a.mean_on_s + a.mean_off_s)
    switches, states, t = [0.0], [on], 0.0
    while t < end:
        t += _exponential(rng, 1.0 / (a.mean_on_s if on else a.mean_off_s))
        on = not on
        switches.append(t)
        states.append(on)

    def rate(t: float) -> float:
        return a.rate_on if states[bisect.bisect_right(switches, t) - 1] else a.rate_off

    return rate, max(a.rate_on, a.rate_off)


def _diurnal(a: Diurnal) -> RateFn:
    swing = a.max_rate - a.min_rate
    return (
        lambda t: a.min_rate
        + swing * (1 - math.cos(2 * math.pi * (t + a.phase_s) / a.period_s)) / 2
    )


def _ramp(a: Ramp, end: float) -> RateFn:
    over = a.over_s if a.over_s is not None else end
    return lambda t: a.from_rate + (a.to_rate - a.from_rate) * min(1.0, t / over)


def _flash(a: FlashCrowd) -> RateFn:
    peak_end = a.at_s + a.rise_s + a.spike_s

    def rate(t: float) -> float:
        if t < a.at_s:
            level = 0.0
        elif t < a.at_s + a.rise_s:
            level = (t - a.at_s) / a.rise_s
        elif t < peak_end:
            level = 1.0
        else:
            level = math.exp(-(t - peak_end) / a.decay_s) if a.decay_s > 0 else 0.0
        return a.base_rate * (1 + (a.factor - 1) * level)

    return rate


def _idle_burst(a: IdleBurst) -> RateFn:
    cycle = a.idle_s + a.burst_s
    return lambda t: a.idle_rate if t % cycle < a.idle_s else a.burst_rate


def _piecewise(a: Piecewise, end: float, rng: random.Random) -> tuple[RateFn, float]:
    starts, parts, t = [], [], 0.0
    for segment in a.segments:
        starts.append(t)
        parts.append(compile_arrival(segment.arrival, segment.duration_s, rng))
        t += segment.duration_s
    total = t

    def rate(t: float) -> float:
        if t >= total:
            return 0.0
        i = bisect.bisect_right(starts, t) - 1
        return parts[i][0](t - starts[i])

    return rate, max(b for _, b in parts)


def _exponential(rng: random.Random, rate: float) -> float:
    return -math.log(1.0 - rng.random()) / rate


# --- sizes ------------------------------------------------------------------------------


def draw(size: Size, rng: random.Random) -> int:
    """One length from ``size``, clipped to its [min, max]."""
    u = min(max(rng.random(), 1e-12), 1 - 1e-12)
    if isinstance(size, LogNormal):
        value = size.median * math.exp(size.sigma * _NORMAL.inv_cdf(u))
    else:
        value = size.scale * (1.0 - u) ** (-1.0 / size.alpha)
    return min(size.max, max(size.min, round(value)))


def _pick_class(classes: tuple[RequestClass, ...], rng: random.Random) -> RequestClass:
    if len(classes) == 1:
        return classes[0]
    return rng.choices(classes, weights=[c.weight for c in classes])[0]


# --- sessions ---------------------------------------------------------------------------


@dataclass
class _Ids:
    """Block ids: the system prompt's blocks are 0..k-1, every other block a fresh id."""

    next_id: int = 0

    def fresh(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def fresh_blocks(self, tokens: int) -> tuple[int, ...]:
        return tuple(self.fresh() for _ in range(-(-tokens // BLOCK_TOKENS)))


@dataclass
class _Session:
    cls: RequestClass
    turns_left: int
    context: int  # tokens so far: the last prompt and its output
    blocks: list[int] = field(default_factory=list)  # ids of the context's full blocks

    def prompt_ids(self, prompt: int, ids: _Ids) -> tuple[int, ...]:
        """Full blocks keep their ids across turns (their tokens never change); the last,
        partial block is new each time: the next prompt extends it with other tokens."""
        full = prompt // BLOCK_TOKENS
        while len(self.blocks) < full:
            self.blocks.append(ids.fresh())
        partial = (ids.fresh(),) if prompt % BLOCK_TOKENS else ()
        return (*self.blocks[:full], *partial)


def _with_sessions(
    spec: TraceSpec, s: Sessions, times: list[float], sizes: random.Random, rng: random.Random
) -> list[TraceRequest]:
    ids = _Ids()
    system = [ids.fresh() for _ in range(s.system_prompt_tokens // BLOCK_TOKENS)]
    p_new = s.share / (s.mean_turns - s.share * (s.mean_turns - 1))
    due: list[tuple[float, int, _Session]] = []
    out: list[TraceRequest] = []
    for number, t in enumerate(times):
        if due and due[0][0] <= t:
            session = heapq.heappop(due)[2]
            request = _next_turn(session, s, t, sizes, ids)
        elif rng.random() < p_new:
            session = _Session(_pick_class(spec.classes, sizes), _turns(s, rng), 0, list(system))
            request = _first_turn(session, s, t, sizes, ids)
        else:
            c = _pick_class(spec.classes, sizes)
            prompt = draw(c.input, sizes)
            out.append(TraceRequest(t, prompt, draw(c.output, sizes), ids.fresh_blocks(prompt)))
            continue
        if request is None:  # the session outgrew the context: this arrival is a single request
            prompt = draw(session.cls.input, sizes)
            request = TraceRequest(
                t, prompt, draw(session.cls.output, sizes), ids.fresh_blocks(prompt)
            )
        elif session.turns_left > 0:
            heapq.heappush(
                due,
                (t + _exponential(rng, 1.0 / s.think_s) if s.think_s > 0 else t, number, session),
            )
        out.append(request)
    return out


def _turns(s: Sessions, rng: random.Random) -> int:
    """At least 2, mean ``mean_turns``: 2 + a geometric number of further turns."""
    if s.mean_turns <= 2:
        return 2
    q = 1.0 / (s.mean_turns - 1)  # P(stop) after each further turn: mean (1 - q) / q = T - 2
    return 2 + int(math.log(1.0 - rng.random()) / math.log(1.0 - q))


def _first_turn(
    session: _Session, s: Sessions, t: float, sizes: random.Random, ids: _Ids
) -> TraceRequest | None:
    prompt = min(s.max_context, s.system_prompt_tokens + draw(session.cls.input, sizes))
    return _turn(session, prompt, t, sizes, ids)


def _next_turn(
    session: _Session, s: Sessions, t: float, sizes: random.Random, ids: _Ids
) -> TraceRequest | None:
    prompt = session.context + draw(s.message, sizes)
    if prompt > s.max_context:
        return None
    return _turn(session, prompt, t, sizes, ids)


def _turn(
    session: _Session, prompt: int, t: float, sizes: random.Random, ids: _Ids
) -> TraceRequest:
    output = draw(session.cls.output, sizes)
    hash_ids = session.prompt_ids(prompt, ids)
    session.context = prompt + output
    session.turns_left -= 1
    return TraceRequest(t, prompt, output, hash_ids)


# --- output -----------------------------------------------------------------------------


def trace_lines(requests: Iterable[TraceRequest]) -> Iterable[str]:
    for r in requests:
        record: dict[str, object] = {
            "timestamp": round(r.arrival_s * 1000),
            "input_length": r.input_tokens,
            "output_length": r.output_tokens,
        }
        if r.hash_ids is not None:
            record["hash_ids"] = list(r.hash_ids)
        yield json.dumps(record, separators=(",", ":")) + "\n"


def write_trace(requests: list[TraceRequest], path: str | Path) -> None:
    """Write JSON lines atomically: a failed write leaves no file behind (or the old one)."""
    path = Path(path)
    if not requests:
        raise SpecError("the spec produced no requests (a rate of 0, or a duration too short)")
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.writelines(trace_lines(requests))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

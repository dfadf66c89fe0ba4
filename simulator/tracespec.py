"""Trace specs: what a synthetic trace looks like, as frozen dataclasses read from JSON.

A spec says how requests arrive (a rate over time), how long their prompts and outputs are,
and whether some of them are turns of multi-turn sessions. :mod:`simulator.tracegen` turns a
spec and a seed into requests; docs/traces.md documents the JSON format field by field.
Every problem in a spec is a :class:`SpecError` that names the field, e.g.
``arrival.segments[1].duration_s: must be a number > 0, got -5``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# z of the 90th percentile of the standard normal: p90 = median * exp(sigma * Z90).
Z90 = 1.2815515655446004
# The model context the regimes assume (Llama-3.1 serves 128k tokens).
DEFAULT_MAX_CONTEXT = 131_072


class SpecError(ValueError):
    """A spec that cannot be generated from; the message starts with the field's path."""


# --- arrival processes -------------------------------------------------------------------


@dataclass(frozen=True)
class Poisson:
    rate: float


@dataclass(frozen=True)
class OnOff:
    """Alternating on and off periods of exponential length, Poisson within each."""

    rate_on: float
    rate_off: float
    mean_on_s: float
    mean_off_s: float


@dataclass(frozen=True)
class Diurnal:
    """A sinusoid from ``min_rate`` (at t = -phase_s) to ``max_rate`` half a period later."""

    min_rate: float
    max_rate: float
    period_s: float
    phase_s: float = 0.0


@dataclass(frozen=True)
class Ramp:
    """Linear from ``from_rate`` to ``to_rate`` over ``over_s`` (None: the whole trace)."""

    from_rate: float
    to_rate: float
    over_s: float | None = None


@dataclass(frozen=True)
class FlashCrowd:
    """``base_rate``; from ``at_s`` it rises linearly over ``rise_s`` to ``base_rate *
    factor``, holds for ``spike_s``, then decays exponentially with time constant
    ``decay_s`` (0: drops at once)."""

    base_rate: float
    factor: float
    at_s: float
    spike_s: float
    rise_s: float = 0.0
    decay_s: float = 0.0


@dataclass(frozen=True)
class IdleBurst:
    """``idle_rate`` for ``idle_s``, then ``burst_rate`` for ``burst_s``, repeated."""

    idle_rate: float
    idle_s: float
    burst_rate: float
    burst_s: float


@dataclass(frozen=True)
class Segment:
    duration_s: float
    arrival: Arrival


@dataclass(frozen=True)
class Piecewise:
    """Segments one after the other; each segment's process starts at its own 0 s."""

    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Sum:
    """Independent processes superposed (their rates add)."""

    processes: tuple[Arrival, ...]


Arrival = Poisson | OnOff | Diurnal | Ramp | FlashCrowd | IdleBurst | Piecewise | Sum


# --- sizes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogNormal:
    median: float
    sigma: float
    min: int = 1
    max: int = DEFAULT_MAX_CONTEXT

    @property
    def p90(self) -> float:
        return self.median * math.exp(self.sigma * Z90)


@dataclass(frozen=True)
class Pareto:
    alpha: float
    scale: float
    min: int = 1
    max: int = DEFAULT_MAX_CONTEXT


Size = LogNormal | Pareto


@dataclass(frozen=True)
class RequestClass:
    """One kind of request (say short chat or long documents): its share and its sizes."""

    weight: float
    input: Size
    output: Size


@dataclass(frozen=True)
class Sessions:
    """Multi-turn sessions. ``share`` of all requests are turns of sessions of ``mean_turns``
    turns (at least 2, geometric); a turn's prompt is the previous prompt + its output + a new
    ``message``, after an exponential think time of mean ``think_s``. Every session starts
    with the same ``system_prompt_tokens``; one that would outgrow ``max_context`` ends."""

    share: float
    mean_turns: float
    think_s: float
    message: Size
    system_prompt_tokens: int = 0
    max_context: int = DEFAULT_MAX_CONTEXT


@dataclass(frozen=True)
class TraceSpec:
    name: str
    duration_s: float
    arrival: Arrival
    classes: tuple[RequestClass, ...]
    sessions: Sessions | None = None
    description: str = ""


# --- reading JSON -----------------------------------------------------------------------


class _Fields:
    """One JSON object being read: typed getters whose errors name the field's path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path or 'spec'}: must be an object, got {_show(data)}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise SpecError(f"{self.at(key)}: required")
            return default
        return self.data[key]

    def number(
        self, key: str, *, low: float = 0.0, strict: bool = False, default: Any = ...
    ) -> Any:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
        if not ok:
            bound = f"> {low:g}" if strict else f">= {low:g}"
            raise SpecError(f"{self.at(key)}: must be a number {bound}, got {_show(value)}")
        return float(value)

    def integer(self, key: str, *, low: int = 0, default: Any = ...) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(f"{self.at(key)}: must be an integer >= {low}, got {_show(value)}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise SpecError(f"{self.at(key)}: must be a string, got {_show(value)}")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            raise SpecError(f"{self.at(key)}: must be a non-empty list, got {_show(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise SpecError(f"{self.at(unknown[0])}: unknown field")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_spec(data: Any) -> TraceSpec:
    """A TraceSpec from a decoded JSON object; raises SpecError naming the bad field."""
    f = _Fields(data, "")
    name = f.text("name", "trace")
    description = f.text("description", "")
    duration = f.number("duration_s", strict=True)
    arrival = parse_arrival(f.raw("arrival"), "arrival")
    if "classes" in f.data:
        classes = tuple(
            _parse_class(item, f"classes[{i}]") for i, item in enumerate(f.items("classes"))
        )
    else:
        sizes = (parse_size(f.raw("input"), "input"), parse_size(f.raw("output"), "output"))
        classes = (RequestClass(1.0, *sizes),)
    sessions = f.raw("sessions", None)
    f.done()
    return TraceSpec(
        name=name,
        duration_s=duration,
        arrival=arrival,
        classes=classes,
        sessions=None if sessions is None else _parse_sessions(sessions, "sessions"),
        description=description,
    )


def _parse_class(data: Any, path: str) -> RequestClass:
    f = _Fields(data, path)
    weight = f.number("weight", strict=True)
    cls = RequestClass(
        weight,
        parse_size(f.raw("input"), f.at("input")),
        parse_size(f.raw("output"), f.at("output")),
    )
    f.done()
    return cls


def _parse_sessions(data: Any, path: str) -> Sessions:
    f = _Fields(data, path)
    share = f.number("share")
    if share > 1:
        raise SpecError(f"{f.at('share')}: must be a share between 0 and 1, got {share:g}")
    mean_turns = f.number("mean_turns")
    if mean_turns < 2:
        raise SpecError(f"{f.at('mean_turns')}: must be a number >= 2, got {mean_turns:g}")
    sessions = Sessions(
        share=share,
        mean_turns=mean_turns,
        think_s=f.number("think_s"),
        message=parse_size(f.raw("message"), f.at("message")),
        system_prompt_tokens=f.integer("system_prompt_tokens", default=0),
        max_context=f.integer("max_context", low=1, default=DEFAULT_MAX_CONTEXT),
    )
    f.done()
    return sessions


def parse_size(data: Any, path: str) -> Size:
    f = _Fields(data, path)
    kind = f.text("kind")
    low = f.integer("min", low=1, default=1)
    high = f.integer("max", low=1, default=DEFAULT_MAX_CONTEXT)
    if high < low:
        raise SpecError(f"{f.at('max')}: must be >= min ({low}), got {high}")
    size: Size
    if kind == "lognormal":
        median = f.number("median", strict=True)
        if ("sigma" in f.data) == ("p90" in f.data):
            raise SpecError(f"{path}: give one of sigma or p90")
        if "sigma" in f.data:
            sigma = f.number("sigma")
        else:
            p90 = f.number("p90", strict=True)
            if p90 < median:
                raise SpecError(f"{f.at('p90')}: must be >= median ({median:g}), got {p90:g}")
            sigma = math.log(p90 / median) / Z90
        size = LogNormal(median, sigma, low, high)
    elif kind == "pareto":
        size = Pareto(f.number("alpha", strict=True), f.number("scale", strict=True), low, high)
    else:
        raise SpecError(f"{f.at('kind')}: must be lognormal or pareto, got {_show(kind)}")
    f.done()
    return size


def parse_arrival(data: Any, path: str) -> Arrival:
    f = _Fields(data, path)
    kind = f.text("kind")
    reader = _ARRIVALS.get(kind)
    if reader is None:
        raise SpecError(f"{f.at('kind')}: must be one of {', '.join(_ARRIVALS)}, got {_show(kind)}")
    arrival = reader(f)
    f.done()
    return arrival


def _poisson(f: _Fields) -> Arrival:
    return Poisson(f.number("rate"))


def _onoff(f: _Fields) -> Arrival:
    return OnOff(
        f.number("rate_on"),
        f.number("rate_off"),
        f.number("mean_on_s", strict=True),
        f.number("mean_off_s", strict=True),
    )


def _diurnal(f: _Fields) -> Arrival:
    low, high = f.number("min_rate"), f.number("max_rate")
    if high < low:
        raise SpecError(f"{f.at('max_rate')}: must be >= min_rate ({low:g}), got {high:g}")
    return Diurnal(low, high, f.number("period_s", strict=True), f.number("phase_s", default=0.0))


def _ramp(f: _Fields) -> Arrival:
    return Ramp(
        f.number("from_rate"), f.number("to_rate"), f.number("over_s", strict=True, default=None)
    )


def _flash(f: _Fields) -> Arrival:
    return FlashCrowd(
        f.number("base_rate"),
        f.number("factor", low=1.0),
        f.number("at_s"),
        f.number("spike_s"),
        f.number("rise_s", default=0.0),
        f.number("decay_s", default=0.0),
    )


def _idle_burst(f: _Fields) -> Arrival:
    return IdleBurst(
        f.number("idle_rate"),
        f.number("idle_s", strict=True),
        f.number("burst_rate"),
        f.number("burst_s", strict=True),
    )


def _piecewise(f: _Fields) -> Arrival:
    segments = []
    for i, item in enumerate(f.items("segments")):
        s = _Fields(item, f.at(f"segments[{i}]"))
        segment = Segment(
            s.number("duration_s", strict=True), parse_arrival(s.raw("arrival"), s.at("arrival"))
        )
        s.done()
        segments.append(segment)
    return Piecewise(tuple(segments))


def _sum(f: _Fields) -> Arrival:
    items = f.items("processes")
    return Sum(tuple(parse_arrival(item, f.at(f"processes[{i}]")) for i, item in enumerate(items)))


_ARRIVALS = {
    "poisson": _poisson,
    "onoff": _onoff,
    "diurnal": _diurnal,
    "ramp": _ramp,
    "flash_crowd": _flash,
    "idle_burst": _idle_burst,
    "piecewise": _piecewise,
    "sum": _sum,
}
_KINDS = {
    cls: kind
    for kind, cls in {
        "poisson": Poisson,
        "onoff": OnOff,
        "diurnal": Diurnal,
        "ramp": Ramp,
        "flash_crowd": FlashCrowd,
        "idle_burst": IdleBurst,
        "piecewise": Piecewise,
        "sum": Sum,
    }.items()
}


# --- writing JSON -----------------------------------------------------------------------


def spec_to_dict(spec: TraceSpec) -> dict[str, Any]:
    """The JSON form of a spec; ``parse_spec(spec_to_dict(s)) == s``."""
    out: dict[str, Any] = {"name": spec.name}
    if spec.description:
        out["description"] = spec.description
    out["duration_s"] = spec.duration_s
    out["arrival"] = arrival_to_dict(spec.arrival)
    out["classes"] = [
        {"weight": c.weight, "input": size_to_dict(c.input), "output": size_to_dict(c.output)}
        for c in spec.classes
    ]
    if spec.sessions is not None:
        s = spec.sessions
        out["sessions"] = {
            "share": s.share,
            "mean_turns": s.mean_turns,
            "think_s": s.think_s,
            "message": size_to_dict(s.message),
            "system_prompt_tokens": s.system_prompt_tokens,
            "max_context": s.max_context,
        }
    return out


def size_to_dict(size: Size) -> dict[str, Any]:
    if isinstance(size, LogNormal):
        return {
            "kind": "lognormal",
            "median": size.median,
            "sigma": size.sigma,
            "min": size.min,
            "max": size.max,
        }
    return {
        "kind": "pareto",
        "alpha": size.alpha,
        "scale": size.scale,
        "min": size.min,
        "max": size.max,
    }


def arrival_to_dict(arrival: Arrival) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": _KINDS[type(arrival)]}
    if isinstance(arrival, Piecewise):
        out["segments"] = [
            {"duration_s": s.duration_s, "arrival": arrival_to_dict(s.arrival)}
            for s in arrival.segments
        ]
    elif isinstance(arrival, Sum):
        out["processes"] = [arrival_to_dict(p) for p in arrival.processes]
    else:
        out |= {k: v for k, v in vars(arrival).items() if v is not None}
    return out

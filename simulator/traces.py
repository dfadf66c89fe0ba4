"""Request traces: Azure LLM inference CSV and JSON lines, parsed once and kept in memory.

Formats (DESIGN.md §3):

- Azure CSV ``TIMESTAMP,ContextTokens,GeneratedTokens`` with timestamps such as
  ``2023-11-16 18:15:46.6805900`` (the two files in ``simulator/traces/`` are the Azure LLM
  inference trace 2023, CC BY 4.0, see ``simulator/traces/README.md``).
- JSON lines with ``timestamp`` (milliseconds from start), ``input_length``, ``output_length``
  and, optionally, ``hash_ids``: one integer per 512-token block of the prompt
  (``simulator.replica.BLOCK_TOKENS``), equal between requests whose prompts share that block
  and everything before it (the Mooncake trace's convention). They give requests prefix
  identity for the replicas' prefix cache and prefix-aware routing.

Times are re-based so the first request arrives at 0 s.
"""

from __future__ import annotations

import csv
import json
import threading
from array import array
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

from simulator.replica import BLOCK_TOKENS

TRACE_DIR = Path(__file__).resolve().parent / "traces"
# The bundled traces, name -> title: the one list (the API's back-test choices and the
# what-if preview's derive from it).
RECORDED_TRACES = {"conv": "Azure LLM conversation trace", "code": "Azure LLM code trace"}
NAMED_TRACES = {name: TRACE_DIR / f"AzureLLMInferenceTrace_{name}.csv" for name in RECORDED_TRACES}


class TraceError(ValueError):
    """The file is not a trace in a format we read."""


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: cache key for expansions
class Trace:
    """Arrival times (s from the first request) and token counts, in arrival order.

    Prefix block hashes, when the trace has them, are one flat array: request ``i``'s are
    ``hash_flat[hash_offsets[i]:hash_offsets[i + 1]]`` (8 bytes a block, not a list each).
    """

    name: str
    times: array[float]
    inputs: array[int]
    outputs: array[int]
    hash_flat: array[int] = field(default_factory=lambda: array("q"))
    hash_offsets: array[int] = field(default_factory=lambda: array("q"))  # empty: none

    def __len__(self) -> int:
        return len(self.times)

    def hash_ids(self, index: int) -> tuple[int, ...]:
        """Request ``index``'s prefix block hashes (empty when the trace has none)."""
        if not self.hash_offsets:
            return ()
        return tuple(self.hash_flat[self.hash_offsets[index] : self.hash_offsets[index + 1]])

    @property
    def duration_s(self) -> float:
        return self.times[-1] if len(self.times) else 0.0


_cache: dict[tuple[str, float], Trace] = {}
_cache_lock = threading.Lock()


def trace_path(name_or_path: str | Path) -> Path:
    """``conv`` and ``code`` name the bundled Azure traces; anything else is a path."""
    named = NAMED_TRACES.get(str(name_or_path))
    return named if named is not None else Path(name_or_path)


def load_trace(name_or_path: str | Path) -> Trace:
    """Parse a trace once per process (keyed by path and modification time)."""
    path = trace_path(name_or_path).resolve()
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from exc
    with _cache_lock:
        trace = _cache.get(key)
        if trace is None:
            trace = _parse(path)
            _cache[key] = trace
    return trace


def _parse(path: Path) -> Trace:
    with path.open(newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.lstrip().startswith("{"):
            rows = _parse_jsonl(handle)
        else:
            rows = _parse_azure_csv(handle)
    rows.sort(key=lambda row: row[0])
    if not rows:
        raise TraceError(f"{path} holds no requests")
    start = rows[0][0]
    flat, offsets = array("q"), array("q")
    if any(row[3] for row in rows):
        offsets.append(0)
        for row in rows:
            flat.extend(row[3])
            offsets.append(len(flat))
    return Trace(
        name=path.stem,
        times=array("d", (row[0] - start for row in rows)),
        inputs=array("l", (max(1, row[1]) for row in rows)),
        outputs=array("l", (max(1, row[2]) for row in rows)),
        hash_flat=flat,
        hash_offsets=offsets,
    )


_Row = tuple[float, int, int, tuple[int, ...]]
_INT64 = 1 << 63


def _parse_azure_csv(handle: TextIO) -> list[_Row]:
    reader = csv.DictReader(handle)
    rows: list[_Row] = []
    try:
        for record in reader:
            rows.append(
                (
                    _azure_seconds(record["TIMESTAMP"]),
                    int(record["ContextTokens"]),
                    int(record["GeneratedTokens"]),
                    (),
                )
            )
    except (KeyError, ValueError, TypeError) as exc:
        raise TraceError(f"not an Azure trace CSV: {exc}") from exc
    return rows


def _azure_seconds(stamp: str) -> float:
    """Seconds since 0001-01-01 for ``YYYY-MM-DD HH:MM:SS.fffffff`` (7 fraction digits)."""
    day, clock = stamp.strip().split(" ")
    hours, minutes, seconds = clock.split(":")
    ordinal = date.fromisoformat(day).toordinal()
    return ordinal * 86400.0 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _parse_jsonl(handle: TextIO) -> list[_Row]:
    rows: list[_Row] = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            inputs = int(record["input_length"])
            rows.append(
                (
                    float(record["timestamp"]) / 1000.0,
                    inputs,
                    int(record["output_length"]),
                    _hash_ids(record.get("hash_ids"), inputs),
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise TraceError(f"line {number}: not a trace record: {exc}") from exc
    return rows


def _hash_ids(value: object, input_tokens: int) -> tuple[int, ...]:
    """Validated ``hash_ids``: a list of 64-bit integers, at most one per prompt block."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and -_INT64 <= h < _INT64 for h in value
    ):
        raise ValueError("hash_ids must be a list of 64-bit integers")
    blocks = -(-max(1, input_tokens) // BLOCK_TOKENS)
    if len(value) > blocks:
        raise ValueError(
            f"hash_ids has {len(value)} blocks, more than the {blocks} of a "
            f"{input_tokens}-token prompt ({BLOCK_TOKENS} tokens a block)"
        )
    return tuple(value)

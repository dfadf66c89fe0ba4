"""Work an observation fixes: computed once per (observation, the parameters it reads).

The what-if replays the same stored observations once per keystroke with an edited policy
(scaling.whatif keeps them across edits); what an algorithm derives from an observation and a
few policy fields alone (predictive's demand series and forecast) is then the same on every
edit that leaves those fields alone. The memo rides on the frozen Observation itself, as
``functools.cached_property`` does: outside its fields (equality, ``repr`` and
``dataclasses.replace`` never see it), gone with the observation. The live loop builds a new
observation each tick, so there it costs one small dict and serves only the second ``decide``
of a tick whose quota binds.

The key must name every parameter the computation reads: a missing one would serve an answer
computed under another value (tests/scaling/engine/test_engine_memo.py changes each one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from .types import Observation

T = TypeVar("T")

# Answers kept per observation and computation: the edits an operator flips between. An
# edit of a keyed field past this drops the oldest.
MAX_KEYS = 8
_ATTRIBUTE = "_memo"
# The what-if's observations are shared by the server's threads; a compute may run twice in
# a race (same answer), but the entries are changed under the lock.
_LOCK = threading.Lock()
_MISSING = object()


def memoised(obs: Observation, name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or its earlier result for the same ``name`` and ``key`` on ``obs``."""
    memo: dict[str, dict[Hashable, object]] | None = obs.__dict__.get(_ATTRIBUTE)
    if memo is None:
        memo = obs.__dict__.setdefault(_ATTRIBUTE, {})  # frozen: as cached_property writes
    entries = memo.get(name)
    found = _MISSING if entries is None else entries.get(key, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[return-value]
    value = compute()
    with _LOCK:
        entries = memo.setdefault(name, {})
        if len(entries) >= MAX_KEYS:
            del entries[next(iter(entries))]
        entries[key] = value
    return value

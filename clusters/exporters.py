"""Reads exporters' /metrics text directly (dcgm-exporter, vLLM, or a simulated cluster), for
setups without a Prometheus server.

One scrape per tick serves every metric name. A node or a cluster exports far more than a
tick reads (a 1,000-pod scrape is ~13 MB, ~85,000 lines, mostly histogram buckets), so the
text is not parsed as a whole: ``parse_samples`` finds the lines of the wanted names with one
regular-expression scan and parses only those (prometheus-client's parser, a
character-by-character loop in Python, took seconds for such a scrape). Exposition text
rarely carries timestamps, so a sample is stamped with the time of the scrape that read it.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterable

from django.conf import settings

from clusters.metrics import MetricsError, Sample, failure_words, normalise_labels

MAX_BYTES = 64 * 1024 * 1024

# The text format (format 0.0.4): name, optional {label="value",...}, value, optional
# timestamp in ms. Label values escape backslash, double quote and newline.
_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LABEL = rf'[ \t]*{_NAME}[ \t]*=[ \t]*"(?:[^"\\\n]|\\.)*"[ \t]*'
_LABEL_BLOCK = re.compile(rf"(?:{_LABEL},)*(?:{_LABEL})?[ \t]*")
_LABELS = re.compile(rf'[ \t]*({_NAME})[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"')
# A line's shape, with the label block taken whole (up to its last "}"); the block is
# checked against the grammar the first time it is seen.
_LINE = r"(?:\{([^\n]*)\})?[ \t]+([^ \t\r\n]+)(?:[ \t]+([^ \t\r\n]+))?[ \t\r]*(?=\n)"
_ESCAPES = re.compile(r'\\[\\n"]')
_UNESCAPED = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}

# Label blocks already parsed, to their normalised labels. A scrape repeats its series from
# one tick to the next, so this turns label parsing into a dict lookup (Prometheus keeps a
# scrape cache for the same reason). Bounded: cleared when full.
_SERIES_CACHE: dict[str, tuple[tuple[str, str], ...]] = {}
SERIES_CACHE_SIZE = 500_000


def read_samples(url: str, names: list[str], now: float) -> dict[str, list[Sample]]:
    text = _scrape(url)
    try:
        return parse_samples(text, names, now)
    except ValueError as exc:
        raise MetricsError(
            f"the exporter at {url} sent text that is not Prometheus exposition: {exc}"
        ) from exc


def parse_samples(text: str, names: Iterable[str], now: float) -> dict[str, list[Sample]]:
    """Every sample of the wanted metric names in exposition ``text``; ValueError on a line
    of a wanted name that is not valid exposition (other lines are not looked at).

    1. Take the lines that start with a wanted name followed by ``{``, a space or a tab
       (so ``foo`` does not take ``foo_bucket``), split into name, label block, value and
       timestamp: one regular-expression scan, in C.
    2. If fewer lines split than start with a name, one is malformed: find it, raise.
    3. Labels of each block, parsed and normalised once (``exported_*`` win) and cached;
       values (``NaN``, ``+Inf`` included) as floats; timestamp in ms, else ``now``.
    """
    wanted = list(dict.fromkeys(names))
    found: dict[str, list[Sample]] = {name: [] for name in wanted}
    if not wanted:
        return found
    body = "\n" + text + "\n"
    either = "\n(" + "|".join(re.escape(name) for name in wanted) + ")"
    rows = re.findall(either + _LINE, body)
    if len(rows) != len(re.findall(either + "[{ \t]", body)):
        _raise_first_invalid(body, either)
    for name, block, value, stamp in rows:
        labels = _SERIES_CACHE.get(block)
        if labels is None:
            labels = _parse_labels(name, block)
        timestamp = _number(stamp) / 1000 if stamp else now
        found[name].append(Sample(name, labels, _number(value), timestamp))
    return found


def _parse_labels(name: str, block: str) -> tuple[tuple[str, str], ...]:
    if _LABEL_BLOCK.fullmatch(block) is None:
        raise ValueError(f"invalid labels: {name}{{{block}}}")
    labels: dict[str, str] = {}
    for key, raw in _LABELS.findall(block):
        if key in labels:
            raise ValueError(f"duplicate label {key!r}: {name}{{{block}}}")
        labels[key] = _ESCAPES.sub(_unescape, raw) if "\\" in raw else raw
    normalised = normalise_labels(labels)
    if len(_SERIES_CACHE) >= SERIES_CACHE_SIZE:
        _SERIES_CACHE.clear()
    _SERIES_CACHE[block] = normalised
    return normalised


def _raise_first_invalid(body: str, either: str) -> None:
    line = re.compile(either + _LINE)
    for start in re.finditer(either + "[{ \t]", body):
        if line.match(body, start.start()) is None:
            end = body.find("\n", start.start() + 1)
            raise ValueError(f"invalid line: {body[start.start() + 1 : end]!r}")


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPED[match.group(0)]


def _number(text: str) -> float:
    # Go's ParseFloat, which Prometheus uses, takes no digit separators; Python's float does.
    if "_" in text:
        raise ValueError(f"invalid value {text!r}")
    return float(text)


def _scrape(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=settings.METRICS_TIMEOUT_S) as response:
            body: bytes = response.read(MAX_BYTES)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        words = failure_words(exc, settings.METRICS_TIMEOUT_S)
        raise MetricsError(f"the exporter at {url} {words}") from exc
    return body.decode("utf-8", errors="replace")

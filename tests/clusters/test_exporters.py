"""The exporter-text parser reads what prometheus-client's parser reads, much faster."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from clusters import exporters
from clusters.exporters import parse_samples
from clusters.metrics import normalise_labels

NOW = 1_700_000_000.0

TRICKY = r"""# HELP vllm:num_requests_running Number of requests {running} "now".
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{namespace="team-a",pod="chat-1"} 3
vllm:num_requests_running{namespace="team-a",pod="chat-2",} 4.5e1
vllm:num_requests_running{ namespace = "team-a" , pod = "chat-3" } NaN
vllm:num_requests_running{namespace="esc\\aped \"quotes\" and\nnewline",pod="p"} +Inf
vllm:num_requests_running{namespace="braces} 7 {, commas=\"x\"",pod="q"} -Inf 1700000000123
vllm:num_requests_running{exported_namespace="team-b",namespace="monitoring",pod="r"} -0.5
vllm:num_requests_running 12 1700000000000

# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{pod="chat-1",le="0.5"} 1
vllm:time_to_first_token_seconds_bucket{pod="chat-1",le="+Inf"} 2
vllm:time_to_first_token_seconds_sum{pod="chat-1"} 0.7
vllm:time_to_first_token_seconds_count{pod="chat-1"} 2
vllm:num_requests_running_other{pod="x"} 99
DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1",namespace="team-a",pod="chat-1"} 87
"""
NAMES = [
    "vllm:num_requests_running",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:time_to_first_token_seconds_count",
    "DCGM_FI_DEV_GPU_UTIL",
    "not_exported_at_all",
]


def reference(text, names):
    """What prometheus-client's parser reads, as comparable tuples (NaN by its repr)."""
    found: dict[str, list[tuple[object, str, float]]] = {name: [] for name in names}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in found:
                stamp = float(s.timestamp) if s.timestamp is not None else NOW
                found[s.name].append((normalise_labels(s.labels), repr(float(s.value)), stamp))
    return found


def ours(text, names):
    return {
        name: [(s.labels, repr(s.value), s.timestamp) for s in samples]
        for name, samples in parse_samples(text, names, NOW).items()
    }


def test_tricky_exposition_reads_as_prometheus_client_reads_it():
    exporters._SERIES_CACHE.clear()
    assert ours(TRICKY, NAMES) == reference(TRICKY, NAMES)
    # Again from the label cache.
    assert ours(TRICKY, NAMES) == reference(TRICKY, NAMES)
    running = parse_samples(TRICKY, NAMES, NOW)["vllm:num_requests_running"]
    assert len(running) == 7
    assert dict(running[3].labels)["namespace"] == 'esc\\aped "quotes" and\nnewline'
    assert dict(running[4].labels)["namespace"] == 'braces} 7 {, commas="x"'
    assert running[4].timestamp == pytest.approx(1_700_000_000.123)
    assert math.isnan(running[2].value) and running[3].value == math.inf
    assert running[5].label("namespace") == "team-b"  # exported_* wins
    assert parse_samples(TRICKY, NAMES, NOW)["not_exported_at_all"] == []


@pytest.mark.parametrize(
    "line",
    [
        'm{a="unterminated} 1',
        "m{a=unquoted} 1",
        'm{a="1",a="2"} 1',
        'm{a="1"} 1_000',
        'm{a="1"} one',
        'm{a="1"} 1 2 3',
        'm{a="1"}',
        'm{1a="x"} 1',
    ],
)
def test_a_malformed_line_of_a_wanted_name_is_an_error(line):
    with pytest.raises(ValueError):
        parse_samples(f"ok 1\n{line}\n", ["m"], NOW)


def test_malformed_lines_of_other_names_are_not_read():
    assert [s.value for s in parse_samples('junk{a=" 1 2\nm 5\n', ["m"], NOW)["m"]] == [5.0]


label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True)
label_values = st.text(alphabet=st.sampled_from('ab z{}=,"\\\n#\té'), max_size=8)
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


series = st.tuples(
    st.sampled_from(["m", "m_bucket", "other"]),
    st.dictionaries(label_names, label_values, max_size=4),
    values,
    st.none() | st.integers(0, 2**41),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(series, max_size=12))
def test_any_valid_exposition_reads_as_prometheus_client_reads_it(lines):
    text = "".join(
        f"{name}{{{','.join(f'{k}={chr(34)}{_escape(v)}{chr(34)}' for k, v in labels.items())}}}"
        f" {_number(value)}{'' if stamp is None else f' {stamp}'}\n"
        for name, labels, value, stamp in lines
    )
    assert ours(text, ["m", "m_bucket"]) == reference(text, ["m", "m_bucket"])

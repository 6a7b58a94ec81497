import json

import pytest
from conftest import FUZZ_EXAMPLES, healthy_gpu_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucheck.snapshot import SCHEMA_VERSION, Snapshot, SnapshotError


def test_round_trip(healthy_snapshot):
    again = Snapshot.from_json(healthy_snapshot.to_json())
    assert again == healthy_snapshot
    assert again.gpus[1].clock_event_reasons == ("gpu_idle",)


def test_unknown_keys_are_ignored(healthy_snapshot):
    data = healthy_snapshot.to_dict()
    data["from_the_future"] = 1
    data["gpus"][0]["new_field"] = "x"
    assert Snapshot.from_dict(data) == healthy_snapshot


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this gpucheck"),
        (lambda d: d.pop("schema_version"), "schema_version"),
        (lambda d: d.pop("system"), "missing field 'system'"),
        (lambda d: d["gpus"][0].update(index="zero"), r"snapshot\.gpus\[0\]\.index: expected int"),
        (lambda d: d["gpus"][0].update(power_draw_w=True), "expected a number"),
        (lambda d: d.update(gpus={}), "expected a list"),
        (lambda d: d["system"].update(env=[]), "expected an object"),
    ],
)
def test_bad_snapshots_say_where(healthy_snapshot, mutate, message):
    data = healthy_snapshot.to_dict()
    mutate(data)
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(data)


def test_truncated_json_is_a_snapshot_error(healthy_snapshot):
    text = healthy_snapshot.to_json()
    with pytest.raises(SnapshotError, match="not valid JSON"):
        Snapshot.from_json(text[: len(text) // 2])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(json_values)
def test_fuzz_from_json_only_raises_snapshot_error(value):
    try:
        Snapshot.from_json(json.dumps(value))
    except SnapshotError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_snapshot(data):
    # Replace one leaf of a real snapshot with junk: it loads or fails cleanly, never crashes.
    doc = healthy_gpu_snapshot().to_dict()
    section = data.draw(st.sampled_from(["system", "driver", "torch", "torch_runtime"]))
    key = data.draw(st.sampled_from(sorted(doc[section])))
    doc[section][key] = data.draw(json_values)
    try:
        Snapshot.from_dict(doc)
    except SnapshotError:
        pass

"""Slurm hostlist expansion (`--nodes gpu[01-16]`): pure, checked against scontrol's rules."""

import pytest
from conftest import FUZZ_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucheck.fleet.hostlist import HostlistError, expand_hostlist


@pytest.mark.parametrize(
    "text, names",
    [
        ("gpu[01-03,07],cpu1", ["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]),
        ("gpu[01-16]", [f"gpu{i:02d}" for i in range(1, 17)]),
        ("gpu[8-10]", ["gpu8", "gpu9", "gpu10"]),  # no padding written, none added
        ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),  # padding of the lower bound kept
        ("gpu[098-101]", ["gpu098", "gpu099", "gpu100", "gpu101"]),
        ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
        ("node[3]-ib", ["node3-ib"]),
        ("a, b ,a", ["a", "b"]),  # duplicates once, spaces around names ignored
        ("n1", ["n1"]),
    ],
)
def test_expands_like_scontrol_show_hostnames(text, names):
    assert expand_hostlist(text) == names


@pytest.mark.parametrize(
    "text", ["gpu[01-", "gpu]", "gpu[a-b]", "gpu[3-1]", "gpu[1-2,]", "a,,b", "", "g[[1]]", "a b"]
)
def test_bad_hostlists_are_one_clear_error(text):
    with pytest.raises(HostlistError):
        expand_hostlist(text)


def test_a_huge_range_is_refused_not_expanded():
    with pytest.raises(HostlistError, match="more than"):
        expand_hostlist("gpu[1-99999999]")
    with pytest.raises(HostlistError, match="more than"):
        expand_hostlist("a[1-1000]b[1-1000]c[1-1000]")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    prefix=st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
    lo=st.integers(0, 500),
    span=st.integers(0, 30),
    width=st.integers(1, 4),
)
def test_a_range_has_every_number_once_in_order(prefix, lo, span, width):
    lo_text = str(lo).zfill(width)
    names = expand_hostlist(f"{prefix}[{lo_text}-{lo + span}]")
    assert len(names) == span + 1
    assert [int(n[len(prefix) :]) for n in names] == list(range(lo, lo + span + 1))
    assert all(len(n) - len(prefix) >= len(lo_text) for n in names)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.text(alphabet="ab1[]-,", max_size=20))
def test_any_text_expands_or_raises_hostlisterror(text):
    try:
        names = expand_hostlist(text)
    except HostlistError:
        return
    assert all(isinstance(n, str) and n for n in names)

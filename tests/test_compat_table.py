"""The built-in compatibility table is well formed and internally consistent."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

import pytest

from gpucheck.compat import (
    PARTS,
    ArchList,
    CompatError,
    build_table,
    cuda_of_variant,
    load_table,
)
from gpucheck.versions import key as version_key
from gpucheck.versions import parse as parse_version

TABLE = load_table()


def raw(part):
    return json.loads(resources.files("gpucheck.compat").joinpath(f"{part}.json").read_text())


def test_loads_once():
    assert load_table() is TABLE


def test_every_block_has_source_and_verified():
    blocks = [
        raw("drivers")["toolkits"],
        raw("drivers")["minor_version_compat"],
        raw("gpus")["nvidia"],
        raw("gpus")["amd"],
        raw("gpus")["intel"],
        raw("gpus")["rocm_index_archs"],
        raw("tools")["conda_forge"],
        raw("tools")["uv"],
        raw("torch")["cudnn_min_sm_rule"],
        raw("torch")["companions"],
        *raw("torch")["releases"],
    ]
    for block in blocks:
        assert block["source"]
        v = block["verified"]
        assert v is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)
    for r in raw("torch")["releases"]:
        assert r["verified"] is not None
        for v in r["variants"]:
            assert v["source"]


def test_releases_newest_first_and_cover_2_0_to_2_15():
    minors = [r.minor for r in TABLE.releases]
    assert minors == [f"2.{i}" for i in range(15, -1, -1)]


def test_every_cuda_variant_has_driver_minimums():
    for r in TABLE.releases:
        for v in r.variants:
            if v.kind != "cuda":
                continue
            # CUDA 13.3-13.5 rows exist but their Table 3 numbers were not retrieved (null)
            if v.cuda < (13, 3):
                assert TABLE.ga_driver(v.cuda, "linux") is not None, (r.version, v.name)
            assert TABLE.mvc_driver(v.cuda[0], "linux") is not None
            assert TABLE.mvc_driver(v.cuda[0], "windows") is not None


def test_rocm_variants_have_an_arch_entry():
    for r in TABLE.releases:
        for v in r.variants:
            if v.kind == "rocm":
                assert v.name in TABLE.rocm_archs


def test_pypi_default_names_a_variant_of_that_release_or_is_unknown():
    for r in TABLE.releases:
        for platform, name in r.pypi_default.items():
            if name is not None and name != "cpu":
                assert r.variant(name) is not None, (r.version, platform, name)


def test_arch_lists_parse_and_follow_known_rules():
    for r in TABLE.releases:
        for v in r.variants:
            for platform, arch in v.arch.items():
                if arch is None:
                    continue
                assert arch.cubins, (r.version, v.name)
                if platform == "windows-x86_64":
                    assert not arch.ptx  # "+PTX available on linux builds only"
                # cuDNN >= 9.11 refuses SM < 7.5: no build ships both
                if v.cudnn and version_key(parse_version(v.cudnn)) >= (9, 11, 0, 0):
                    assert arch.min_cc() >= (7, 5), (r.version, v.name)
                # CUDA 12.8+ has no Maxwell/Pascal; CUDA 13 has no Volta
                if v.cuda >= (12, 8):
                    assert arch.min_cc() >= (7, 0), (r.version, v.name)
                if v.cuda >= (13, 0):
                    assert arch.min_cc() >= (7, 5), (r.version, v.name)


def test_variant_lifetimes_match_research():
    have = {(r.minor, v.name) for r in TABLE.releases for v in r.variants}
    assert ("2.8", "cu129") in have and not any(n == "cu129" and m != "2.8" for m, n in have)
    assert {m for m, n in have if n == "cu132"} == {"2.12", "2.13", "2.14", "2.15"}
    assert {m for m, n in have if n == "cu128"} == {"2.7", "2.8", "2.9", "2.10", "2.11"}
    assert {m for m, n in have if n == "xpu"} == {f"2.{i}" for i in range(5, 15)}


def test_python_lists():
    for r in TABLE.releases:
        assert r.python, r.version
        assert not set(r.python) & set(r.python_unconfirmed)


def test_arch_rule():
    pascal = ArchList.parse("5.0;6.0;7.0")
    assert pascal.runs_on((6, 1)) is True and pascal.runs_on((7, 5)) is True
    assert pascal.runs_on((8, 0)) is False and pascal.runs_on((3, 7)) is False
    ptx = ArchList.parse("7.5;8.0;8.6;9.0;10.0;12.0+PTX")
    assert ptx.runs_on((8, 9)) is True  # sm_86 cubin
    assert ptx.runs_on((12, 1)) is True  # GB10 runs sm_120
    assert ptx.runs_on((6, 1)) is False
    assert ArchList.parse("sm_75 sm_80 compute_80").runs_on((9, 0), ptx_ok=False) is False
    assert ArchList.parse("sm_75 sm_80 compute_80").runs_on((9, 0), ptx_ok=None) is None
    assert cuda_of_variant("cu92") == (9, 2) and cuda_of_variant("cpu") is None


def test_gpu_lookup():
    cases = {
        "NVIDIA GeForce GTX 1080 Ti": (6, 1),
        "Tesla V100-SXM2-32GB": (7, 0),
        "Tesla T4": (7, 5),
        "NVIDIA GeForce RTX 3090": (8, 6),
        "NVIDIA A100-SXM4-40GB": (8, 0),
        "NVIDIA GeForce RTX 4090": (8, 9),
        "NVIDIA H100 80GB HBM3": (9, 0),
        "NVIDIA H200": (9, 0),
        "NVIDIA GH200 480GB": (9, 0),
        "NVIDIA B200": (10, 0),
        "NVIDIA GeForce RTX 5090": (12, 0),
        "NVIDIA GeForce RTX 4070 Laptop GPU": (8, 9),
        "Quadro RTX 6000": (7, 5),
        "NVIDIA RTX 6000 Ada Generation": (8, 9),
        "NVIDIA RTX A6000": (8, 6),
        "NVIDIA A10": (8, 6),
        "NVIDIA L4": (8, 9),
        "NVIDIA L40S": (8, 9),
    }
    for name, cc in cases.items():
        assert TABLE.lookup_gpu(name).cc == cc, name
    assert TABLE.lookup_gpu("AMD Instinct MI300X").gfx == "gfx942"
    assert TABLE.lookup_gpu("Intel(R) Arc(TM) A770 Graphics").vendor == "intel"
    assert TABLE.lookup_gpu("Some Unknown Card") is None


def parts():
    return {p: raw(p) for p in PARTS}


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: d["torch"]["releases"].reverse(), "newest first"),
        (lambda d: d["torch"]["releases"][0]["variants"][0].update(name="cu999"), "no driver row"),
        (
            lambda d: d["torch"]["releases"][1]["variants"][0]["arch"].update(
                {"linux-x86_64": "7.5;banana"}
            ),
            "arch list",
        ),
        (lambda d: d["drivers"]["toolkits"].pop("source"), "source"),
        (lambda d: d["torch"]["releases"][1].pop("verified"), "verified"),
        (lambda d: d["torch"]["releases"][1].update(python=["three"]), "Python"),
        (lambda d: d["gpus"]["rocm_index_archs"]["archs"].pop("rocm7.2"), "rocm_index_archs"),
        (
            lambda d: d["torch"]["releases"][1]["variants"].append(
                {"name": "weird", "status": "confirmed"}
            ),
            "variant name",
        ),
    ],
)
def test_malformed_tables_are_rejected(breakage, message):
    data = copy.deepcopy(parts())
    breakage(data)
    with pytest.raises(CompatError, match=message):
        build_table(data)


def test_compat_file_overrides_parts(tmp_path):
    data = parts()
    data["torch"]["releases"] = data["torch"]["releases"][2:]  # a table that stops at 2.13
    f = tmp_path / "compat.json"
    f.write_text(json.dumps({"torch": data["torch"]}))
    table = load_table(f)
    assert table.releases[0].minor == "2.13" and table.origin == str(f)
    assert load_table(json.dumps({"torch": data["torch"]}), source="x").releases[0].minor == "2.13"


@pytest.mark.parametrize("text", ["not json", "[]", "{}", '{"torch": 3}'])
def test_bad_compat_file(tmp_path, text):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(CompatError):
        load_table(f)


def test_missing_compat_file(tmp_path):
    with pytest.raises(CompatError, match="cannot read"):
        load_table(tmp_path / "nope.json")

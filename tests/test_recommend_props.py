"""Properties of the decision over generated machines (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpucheck.compat import load_table, parse_cc
from gpucheck.recommend import InstalledTorch, Machine, MachineGpu, recommend
from gpucheck.recommend.engine import driver_os
from gpucheck.versions import key as version_key
from gpucheck.versions import parse as parse_version

TABLE = load_table()
CCS = [
    "3.5",
    "3.7",
    "5.0",
    "5.2",
    "6.0",
    "6.1",
    "7.0",
    "7.5",
    "8.0",
    "8.6",
    "8.7",
    "8.9",
    "9.0",
    "10.0",
    "10.3",
    "11.0",
    "12.0",
    "12.1",
]
DRIVERS = [
    "418.39",
    "450.80.02",
    "470.82.01",
    "520.61.05",
    "525.60.12",
    "525.60.13",
    "528.33",
    "535.104.05",
    "550.54.14",
    "560.28.03",
    "560.76",
    "570.26",
    "575.51.03",
    "576.02",
    "580",
    "580.65.06",
    "590.44.01",
    "595.45.04",
    "595.71.05",
]
PYTHONS = [f"3.{i}" for i in range(6, 18)]


@st.composite
def machines(draw):
    os_name = draw(st.sampled_from(["linux", "linux", "linux", "windows", "macos"]))
    arch = "x86_64"
    if os_name == "linux":
        arch = draw(st.sampled_from(["x86_64", "x86_64", "aarch64"]))
    elif os_name == "macos":
        arch = draw(st.sampled_from(["arm64", "x86_64"]))
    gpus = tuple(
        MachineGpu(index=i, name=None, vendor="nvidia", compute_capability=cc)
        for i, cc in enumerate(draw(st.lists(st.sampled_from([*CCS, None]), max_size=3)))
    )
    driver = draw(st.sampled_from(DRIVERS)) if gpus else None
    return Machine(
        os=os_name,
        arch=arch,
        python=draw(st.sampled_from(PYTHONS)),
        driver=driver,
        gpus=gpus,
        wsl=os_name == "linux" and draw(st.booleans()),
    )


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(machines())
def test_chosen_build_respects_the_hard_constraints(m):
    rec = recommend(m, table=TABLE)
    if rec.action != "install":
        return
    release = TABLE.release(rec.torch)
    variant = release.variant(rec.variant)
    # never an unsupported Python
    assert m.python in release.python + release.python_unconfirmed
    # never a newer driver than given
    if variant.kind == "cuda" and m.driver:
        floor = TABLE.mvc_driver(variant.cuda[0], driver_os(m))
        assert version_key(parse_version(m.driver)) >= version_key(floor)
    # never lacking a GPU's architecture (except GPUs named in a warning as not covered)
    if variant.kind == "cuda":
        arch = variant.arch_for(m.platform)
        assert arch is not None
        full, _ = TABLE.full_driver(variant.cuda, driver_os(m))
        ptx_ok = full is not None and version_key(parse_version(m.driver)) >= version_key(full)
        floor = TABLE.cudnn_floor(parse_version(variant.cudnn)) if variant.cudnn else None
        for g in m.gpus:
            # kernels first: unknown capability, no code, or refused by cuDNN is never "covered"
            cc = parse_cc(g.compute_capability) if g.compute_capability else None
            ok = cc is not None and arch.runs_on(cc, ptx_ok) is True
            ok = ok and (floor is None or cc >= floor)
            if not ok:
                assert any(f"GPU {g.index} " in w and "not covered" in w for w in rec.warnings)
            # a driver that predates the GPU cannot drive it
            need = TABLE.gpu_driver(cc, driver_os(m)) if cc else None
            if need is not None:
                assert version_key(parse_version(m.driver)) >= version_key(need[1])


@SETTINGS
@given(machines())
def test_recommended_build_installed_means_action_none(m):
    rec = recommend(m, table=TABLE)
    if rec.action != "install" or rec.torch is None:
        return
    if any("not covered" in w for w in rec.warnings):
        return  # a partial fit for mixed GPUs is still a misfit for the GPU left out
    variant = TABLE.release(rec.torch).variant(rec.variant)
    cuda = f"{variant.cuda[0]}.{variant.cuda[1]}" if variant.cuda else None
    again = recommend(m.replace(torch=InstalledTorch(rec.build, rec.variant, cuda)), table=TABLE)
    assert again.action == "none", again.reasons
    assert again.torch == rec.torch and again.variant == rec.variant


@SETTINGS
@given(machines())
def test_every_result_is_well_formed(m):
    d = recommend(m, table=TABLE).to_dict()
    assert d["action"] in ("none", "install", "upgrade-driver", "change-python", "unsupported")
    assert isinstance(d["reasons"], list) and d["reasons"]
    assert (d["variant"] is None) == (d["pip"] is None)
    if d["conda"]:
        assert "-c pytorch " not in d["conda"] + " "

"""Pure parsers on literal text (samples under tests/fixtures/text/, provenance in its README)."""

from __future__ import annotations

import json
import pathlib

import pytest
from conftest import FUZZ_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucheck.probe.parsers import (
    decode_cuda_version,
    decode_cudnn_version,
    local_tag,
    parse_cuda_version_json,
    parse_cudart_header,
    parse_cudnn_header,
    parse_kfd_gfx,
    parse_ldconfig,
    parse_meminfo_total,
    parse_nvcc_version,
    parse_nvidia_smi_csv,
    parse_os_release,
    parse_proc_driver_version,
    parse_proc_modules,
    parse_sys_module_version,
    parse_torch_version_py,
    version_from_filename,
)

TEXT = pathlib.Path(__file__).parent / "fixtures" / "text"


def sample(name: str) -> str:
    return (TEXT / name).read_text()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12040, "12.4"),
        (12080, "12.8"),
        (13000, "13.0"),
        (11020, "11.2"),
        (12090, "12.9"),
        (0, None),
        (-1, None),
        (True, None),
        ("12040", None),
    ],
)
def test_decode_cuda_version(value, expected):
    assert decode_cuda_version(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90100, "9.1.0"),
        (91002, "9.10.2"),
        (90300, "9.3.0"),
        (8902, "8.9.2"),
        (7605, "7.6.5"),
        (8700, "8.7.0"),
        (0, None),
        (None, None),
    ],
)
def test_decode_cudnn_version(value, expected):
    assert decode_cudnn_version(value) == expected


def test_proc_driver_version_proprietary_and_open():
    assert parse_proc_driver_version(sample("proc_driver_version_proprietary.txt")) == "550.54.14"
    assert parse_proc_driver_version(sample("proc_driver_version_open.txt")) == "555.42.02"
    aarch64 = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.65.06  Release Build\n"
    assert parse_proc_driver_version(aarch64) == "580.65.06"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NVRM version: something else\n",
        "GCC version: 12.2\n",
        "\x00\xff garbage",
        "Kernel Module 550.54.14\n",
    ],
)
def test_proc_driver_version_malformed(text):
    assert parse_proc_driver_version(text) is None


def test_sys_module_version():
    assert parse_sys_module_version(sample("sys_module_nvidia_version.txt")) == "550.54.14"
    assert parse_sys_module_version("") is None
    assert parse_sys_module_version("not a version\n") is None


def test_nvidia_smi_csv():
    gpus = parse_nvidia_smi_csv(sample("nvidia_smi_query.csv"))
    assert [g.index for g in gpus] == [0, 1]
    g = gpus[1]
    assert (g.name, g.uuid, g.pci_bus_id) == (
        "NVIDIA H100 80GB HBM3",
        "GPU-7a8b9c0d-1e2f-4a5b-8c9d-0e1f2a3b4c5d",
        "00000000:2A:00.0",
    )
    assert (g.driver_version, g.compute_cap, g.memory_total_mib, g.memory_used_mib) == (
        "550.54.15",
        "9.0",
        81559,
        3,
    )


def test_nvidia_smi_csv_not_available_values():
    (g,) = parse_nvidia_smi_csv(sample("nvidia_smi_query_na.csv"))
    assert g.name == "NVIDIA GeForce RTX 3060 Laptop GPU"
    assert g.memory_total_mib is None and g.memory_used_mib is None


@pytest.mark.parametrize("name", ["nvidia_smi_version_mismatch.txt", "nvidia_smi_no_driver.txt"])
def test_nvidia_smi_error_text_is_not_gpus(name):
    assert parse_nvidia_smi_csv(sample(name)) is None


def test_nvidia_smi_csv_empty_and_shortened_fields():
    assert parse_nvidia_smi_csv("") == []
    fields = (
        "index",
        "name",
        "uuid",
        "pci.bus_id",
        "driver_version",
        "memory.total",
        "memory.used",
    )
    (g,) = parse_nvidia_smi_csv(
        "0, Tesla T4, GPU-1, 00000000:00:04.0, 470.223.02, 15109, 0\n", fields
    )
    assert g.compute_cap is None and g.memory_total_mib == 15109


def test_nvcc_version():
    assert parse_nvcc_version(sample("nvcc_version.txt")) == "13.0"
    assert parse_nvcc_version("Cuda compilation tools, release 12.4, V12.4.131") == "12.4"
    assert parse_nvcc_version("nvcc: command not found") is None


def test_version_json_and_cudart_header():
    assert parse_cuda_version_json(json.loads(sample("cuda_version.json"))) == "12.4"
    assert parse_cuda_version_json({"cuda": {"version": 12}}) is None
    assert parse_cuda_version_json([]) is None
    assert parse_cudart_header("#define CUDART_VERSION  13000\n") == "13.0"
    assert parse_cudart_header("#define CUDART_VERSION_H\n") is None


def test_ldconfig():
    entries = parse_ldconfig(sample("ldconfig_p.txt"))
    by_path = {e.path: e for e in entries}
    assert len(entries) == 11  # the header line is not an entry
    e = by_path["/usr/local/cuda-13.0/lib/libcudart.so.13"]
    assert (e.soname, e.flags) == ("libcudart.so.13", "libc6,x86-64")
    assert by_path["/lib/i386-linux-gnu/libcuda.so.1"].flags == "libc6"
    assert by_path["/usr/lib/x86_64-linux-gnu/libfoo.so.2"].soname == "libfoo.so.2"
    assert parse_ldconfig("garbage\n\tno arrow here\n") == []


def test_cudnn_headers():
    assert parse_cudnn_header(sample("cudnn_version_9_1_0.h")) == "9.1.0"
    assert parse_cudnn_header(sample("cudnn_version_8_9_2.h")) == "8.9.2"
    assert parse_cudnn_header("#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 1\n") is None


def test_os_release():
    data = parse_os_release(sample("os_release_debian12.txt"))
    assert data["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert data["ID"] == "debian" and data["VERSION_ID"] == "12"
    assert parse_os_release("# comment\nNAME='Ubuntu'\nbroken line\n") == {"NAME": "Ubuntu"}


def test_proc_modules():
    assert parse_proc_modules(sample("proc_modules.txt")) == {
        "nvidia_uvm",
        "nvidia_drm",
        "nvidia_modeset",
        "nvidia",
        "video",
    }
    assert "nouveau" in parse_proc_modules(sample("proc_modules_nouveau.txt"))
    assert parse_proc_modules("") == set()


def test_meminfo():
    assert parse_meminfo_total(sample("proc_meminfo.txt")) == 24684096 * 1024
    assert parse_meminfo_total("MemFree: 1 kB\n") is None


@pytest.mark.parametrize(
    ("name", "version", "cuda", "hip"),
    [
        ("torch_version_cpu.py.txt", "2.13.0+cpu", None, None),
        ("torch_version_cu128.py.txt", "2.9.1+cu128", "12.8", None),
        ("torch_version_rocm.py.txt", "2.9.1+rocm6.4", None, "6.4.43482-0f2d60242"),
    ],
)
def test_torch_version_py(name, version, cuda, hip):
    data = parse_torch_version_py(sample(name))
    assert data == {"__version__": version, "cuda": cuda, "hip": hip}


def test_local_tag_and_filename_versions():
    assert local_tag("2.9.1+cu128") == "cu128"
    assert local_tag("2.13.0+cpu") == "cpu"
    assert local_tag("2.9.1+rocm6.4") == "rocm6.4"
    assert local_tag("2.9.1") is None and local_tag(None) is None
    assert version_from_filename("libcudnn.so.9.1.0") == "9.1.0"
    assert version_from_filename("libcuda.so.550.54.14") == "550.54.14"
    assert version_from_filename("libcudart.so") is None


# --- no parser raises on arbitrary text ----------------------------------------------------

TEXT_PARSERS = (
    parse_proc_driver_version,
    parse_kfd_gfx,
    parse_sys_module_version,
    parse_nvidia_smi_csv,
    parse_nvcc_version,
    parse_cudart_header,
    parse_cudnn_header,
    parse_ldconfig,
    parse_os_release,
    parse_proc_modules,
    parse_meminfo_total,
    parse_torch_version_py,
    version_from_filename,
    local_tag,
)
# Mix in fragments of real samples so that the fuzzer reaches the deeper branches.
FRAGMENTS = st.sampled_from(
    [
        "NVRM version: ",
        "Kernel Module",
        " for x86_64 ",
        "550.54.14",
        ",",
        "[N/A]",
        "\n",
        "\t",
        "release ",
        "#define CUDNN_MAJOR ",
        "(libc6,x86-64) => ",
        "MemTotal: ",
        " kB",
        "cuda = '",
        "'",
        "=",
        "+",
        ".so.",
        "\x00",
        "\udcff",
    ]
)
TEXTS = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=5))).map("".join))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(TEXTS)
def test_fuzz_parsers_never_raise(text):
    for parse in TEXT_PARSERS:
        parse(text)
    parse_cuda_version_json(text)


@given(st.integers(min_value=1, max_value=10**7))
def test_decoders_round_trip_shape(value):
    cudnn = decode_cudnn_version(value)
    assert cudnn is not None and len(cudnn.split(".")) == 3
    assert decode_cuda_version(value).count(".") == 1


@pytest.mark.parametrize(
    "value, gfx",
    [(90402, "gfx942"), (90010, "gfx90a"), (110000, "gfx1100"), (100300, "gfx1030"), (0, None)],
)
def test_parse_kfd_gfx(value, gfx):
    text = f"cpu_cores_count 0\nsimd_count 304\ngfx_target_version {value}\nvendor_id 4098\n"
    assert parse_kfd_gfx(text) == gfx
    assert parse_kfd_gfx("garbage") is None

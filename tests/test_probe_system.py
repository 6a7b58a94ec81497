"""System probe on fake /proc, /sys, /dev, /etc trees, and collect() on such a tree."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

from gpucheck.probe import collect, system
from gpucheck.probe.pyenv import inspect_python
from gpucheck.snapshot import DeviceNode, LibDir, Snapshot

TEXT = pathlib.Path(__file__).parent / "fixtures" / "text"


def write(root: pathlib.Path, path: str, text: str = "") -> pathlib.Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pytest.fixture
def tree(tmp_path) -> pathlib.Path:
    """A GPU host: Debian, nvidia modules, two device nodes, one NVIDIA PCI function."""
    root = tmp_path / "root"
    write(root, "/etc/os-release", (TEXT / "os_release_debian12.txt").read_text())
    write(root, "/proc/version", "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)\n")
    write(root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n")
    write(root, "/proc/modules", (TEXT / "proc_modules.txt").read_text())
    write(root, "/proc/meminfo", (TEXT / "proc_meminfo.txt").read_text())
    write(root, "/proc/1/cgroup", "0::/init.scope\n")
    for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        write(root, f"/dev/{node}")
    write(root, "/dev/nvidia-caps/nvidia-cap1")
    (root / "dev/shm").mkdir(parents=True)
    write(root, "/sys/bus/pci/devices/0000:18:00.0/vendor", "0x10de\n")
    write(root, "/sys/bus/pci/devices/0000:18:00.0/class", "0x030200\n")
    write(root, "/sys/bus/pci/devices/0000:18:00.1/vendor", "0x10de\n")  # its audio function
    write(root, "/sys/bus/pci/devices/0000:18:00.1/class", "0x040300\n")
    write(root, "/sys/bus/pci/devices/0000:00:1f.0/vendor", "0x8086\n")
    write(root, "/sys/bus/pci/devices/0000:00:1f.0/class", "0x060100\n")
    return root


PY = inspect_python(None, os.environ)


def test_gpu_host(tree):
    s = system.probe_system(str(tree), {"PATH": "/usr/bin"}, PY)
    assert s.os == "linux" and s.distro == "Debian GNU/Linux 12 (bookworm)"
    assert s.kernel == "6.1.0-18-amd64"
    assert s.nvidia_module_loaded is True and s.nouveau_loaded is False
    assert s.container is None and s.wsl is False and s.linux_driver_in_wsl == ()
    assert [n.path for n in s.device_nodes] == [
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/nvidia-caps/nvidia-cap1",
    ]
    assert all(n.readable for n in s.device_nodes)
    assert s.memory_bytes == 24684096 * 1024
    assert s.nvidia_pci_devices == ("0000:18:00.0",)
    assert s.shm_bytes and s.shm_bytes > 0
    assert s.python.executable == sys.executable and s.python.version == PY.version


def test_unreadable_device_nodes(tree, monkeypatch):
    real_access = os.access

    def access(path, mode, **kw):
        if os.path.basename(path) == "nvidia0":
            return False
        return real_access(path, mode, **kw)

    monkeypatch.setattr(system.os, "access", access)
    nodes = {n.path: n for n in system.device_nodes(str(tree))}
    assert nodes["/dev/nvidia0"] == DeviceNode("/dev/nvidia0", readable=False, writable=False)
    assert nodes["/dev/nvidiactl"].readable is True


def test_no_gpu_files_at_all(tmp_path):
    root = tmp_path / "bare"
    root.mkdir()
    s = system.probe_system(str(root), {}, PY)
    assert s.device_nodes == () and s.distro is None and s.memory_bytes is None
    assert s.nouveau_loaded is None and s.nvidia_module_loaded is None  # unknown, not "no"
    assert s.nvidia_pci_devices is None and s.shm_bytes is None and s.kernel is None


def test_nouveau_and_sys_module_fallback(tree):
    (tree / "proc/modules").write_text((TEXT / "proc_modules_nouveau.txt").read_text())
    s = system.probe_system(str(tree), {}, PY)
    assert s.nouveau_loaded is True and s.nvidia_module_loaded is False
    (tree / "proc/modules").unlink()
    (tree / "sys/module/nvidia").mkdir(parents=True)
    s = system.probe_system(str(tree), {}, PY)
    assert s.nvidia_module_loaded is True and s.nouveau_loaded is False


@pytest.mark.parametrize(
    ("marker", "env", "expected"),
    [
        ("/.dockerenv", {}, "docker"),
        ("/run/.containerenv", {}, "podman"),
        (None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
        ("cgroup:0::/kubepods/besteffort/pod1234/abcd", {}, "kubernetes"),
        ("cgroup:12:devices:/docker/0123456789ab", {}, "docker"),
        (None, {}, None),
    ],
)
def test_container_markers(tree, marker, env, expected):
    if marker and marker.startswith("cgroup:"):
        (tree / "proc/1/cgroup").write_text(marker[len("cgroup:") :] + "\n")
    elif marker:
        write(tree, marker)
    assert system.detect_container(str(tree), env) == expected


def test_wsl_with_linux_driver_inside(tree):
    (tree / "proc/version").write_text(
        "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1234) (gcc (GCC) 11.2.0)\n"
    )
    write(tree, "/usr/lib/wsl/lib/libcuda.so.1")
    write(tree, "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14")
    write(tree, "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")
    s = system.probe_system(str(tree), {}, PY)
    assert s.wsl is True
    assert s.linux_driver_in_wsl == (
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    )


def test_clean_wsl(tmp_path):
    root = tmp_path / "wsl"
    write(root, "/usr/lib/wsl/lib/libcuda.so.1")
    s = system.probe_system(str(root), {}, PY)
    assert s.wsl is True and s.linux_driver_in_wsl == ()


def test_env_and_ld_library_path(tree, tmp_path):
    cuda_lib = tmp_path / "cuda" / "lib64"
    cuda_lib.mkdir(parents=True)
    for name in ("libcudart.so.12", "libcublas.so.12", "libnvJitLink.so.12", "libfoo.so", "README"):
        (cuda_lib / name).write_text("")
    other = tmp_path / "other"
    other.mkdir()
    (other / "libz.so.1").write_text("")
    env = {
        "CUDA_VISIBLE_DEVICES": "",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_LAUNCH_BLOCKING": "1",
        "CUDA_INJECTION64_PATH": "/opt/tool.so",
        "LD_LIBRARY_PATH": f"{other}:{cuda_lib}::/does/not/exist",
        "HOME": "/root",
    }
    s = system.probe_system("/", env, PY)
    assert s.env == {k: v for k, v in env.items() if k != "HOME"}
    assert s.ld_library_path == (
        LibDir(
            path=str(cuda_lib),
            libraries=("libcublas.so.12", "libcudart.so.12", "libnvJitLink.so.12"),
        ),
    )


def test_collect_on_fake_tree(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no bindings: NVML is ModuleNotFound
    write(tree, "/proc/driver/nvidia/version", (TEXT / "proc_driver_version_open.txt").read_text())
    env = {"PATH": str(tree / "no-bin"), "CUDA_VISIBLE_DEVICES": "0"}
    snap = collect(root=str(tree), env=env, torch_child=False)
    assert Snapshot.from_json(snap.to_json()) == snap
    assert snap.system.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert snap.driver.nvml_error == "ModuleNotFound"
    assert (snap.driver.source, snap.driver.version) == ("/proc/driver/nvidia/version", "555.42.02")
    assert snap.driver.kernel_module_version == "555.42.02"
    assert snap.gpus == () and snap.cuda.toolkits == ()  # nothing under the fake /usr/local
    assert snap.cuda.libraries == ()  # the loader cache is not read for a fake root
    assert snap.torch_runtime is None
    assert snap.created and snap.created.endswith("+00:00")
    assert snap.probe_seconds is not None and snap.probe_seconds < 5


def test_amd_gpus_from_kfd_topology(tmp_path):
    root = tmp_path / "root"
    nodes = "/sys/class/kfd/kfd/topology/nodes"
    write(root, f"{nodes}/0/properties", "cpu_cores_count 64\ngfx_target_version 0\n")
    write(root, f"{nodes}/1/properties", "simd_count 304\ngfx_target_version 90402\n")
    write(root, f"{nodes}/2/properties", "simd_count 304\ngfx_target_version 90402\n")
    assert system.amd_gfx(str(root)) == ("gfx942", "gfx942")
    assert system.amd_gfx(str(tmp_path / "nothing")) == ()


def test_jetson_is_detected_from_l4t_or_the_device_tree(tmp_path):
    # L4T's release file first, else the SoC in the device tree (Linux's tegra.yaml bindings).
    root = tmp_path / "j"
    write(
        root,
        "/etc/nv_tegra_release",
        "# R36 (release), REVISION: 3.0, GCID: 36106755, BOARD: generic, EABI: aarch64\n",
    )
    assert system.tegra(str(root)) == "R36 (release), REVISION: 3.0 (/etc/nv_tegra_release)"
    root = tmp_path / "dt"
    write(
        root,
        "/proc/device-tree/compatible",
        "nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00",
    )
    assert system.tegra(str(root)) == "nvidia,tegra234 (/proc/device-tree/compatible)"
    root = tmp_path / "pc"
    write(root, "/proc/device-tree/compatible", "raspberrypi,4-model-b\x00brcm,bcm2711\x00")
    assert system.tegra(str(root)) is None
    assert system.tegra(str(tmp_path / "nothing")) is None


def test_tf32_override_is_recorded(tree):
    env = {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1", "PATH": "/usr/bin"}
    info = system.probe_system(str(tree), env, inspect_python(None, env))
    assert info.env["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] == "1"

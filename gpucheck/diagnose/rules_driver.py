"""Rules GC101-GC106, GC113, GC115: is there an NVIDIA GPU, and does its driver work?

Sources: nvml.h (NVML_ERROR_* return codes: LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED,
LIB_RM_VERSION_MISMATCH, NO_PERMISSION); nvidia-smi's "Driver/library version mismatch" after
a driver upgrade without reboot; NVIDIA's driver installation guide (blacklisting nouveau,
DKMS rebuilds after a kernel update); PCI vendor id 0x10de in /sys/bus/pci/devices; Jetson:
Linux Documentation/devicetree/bindings/arm/tegra.yaml and Syllo/nvtop#225 (no NVML).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck.diagnose import facts, rule
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO

# NVML errors that a specific rule explains; any other one is GC113.
_HANDLED_NVML = {None, "LibraryNotFound", "DriverNotLoaded", "LibRmVersionMismatch", "NoPermission"}


def _nvml(s: Snapshot) -> str:
    return f"NVML: {s.driver.nvml_error or 'ok'}"


def _pci(s: Snapshot) -> str | None:
    devs = s.system.nvidia_pci_devices
    if devs is None:
        return None
    return f"NVIDIA PCI devices: {', '.join(devs) if devs else 'none'}"


def _no_driver_at_all(s: Snapshot) -> bool:
    d = s.driver
    return (
        not s.gpus
        and d.version is None
        and d.nvml_error in (None, "LibraryNotFound")
        and facts.host_driver_hint(s) is None
        and not s.system.nouveau_loaded
        and not (facts.container_without_gpus(s) and facts.container_gpu_hint(s))
        and not s.system.wsl
        and not facts.is_tegra(s)
    )


@rule("GC101", "GC102")
def no_gpu(s: Snapshot) -> Iterator[Finding]:
    """GC101 (no GPU anywhere) and GC102 (a GPU on the bus but no driver)."""
    if not _no_driver_at_all(s):
        return
    ev = tuple(e for e in (_nvml(s), _pci(s), "no /proc/driver/nvidia/version") if e)
    if s.system.nvidia_pci_devices:
        yield Finding(
            "GC102",
            ERROR,
            "An NVIDIA GPU is on the PCI bus but no NVIDIA driver is installed",
            ev,
            fix="Install the NVIDIA driver and reboot: Ubuntu `sudo ubuntu-drivers install`; "
            "Debian `sudo apt install nvidia-driver` (non-free); others: the distribution's "
            "package or NVIDIA's driver installation guide. Then run `nvidia-smi`.",
        )
        return
    if s.system.container:
        ev += (f"container: {s.system.container}, no /dev/nvidia* device nodes",)
        fix = (
            "Nothing to fix if the host has no NVIDIA GPU. If it has one, start this container "
            "with GPUs: `docker run --gpus all ...` (needs nvidia-container-toolkit on the host)."
        )
    else:
        fix = (
            "Nothing to fix on a machine without an NVIDIA GPU. If it has one, check "
            "`lspci | grep -i nvidia` and install the NVIDIA driver."
        )
    yield Finding(
        "GC101", INFO, "No NVIDIA GPU or driver found: torch will run on the CPU", ev, fix=fix
    )


@rule("GC103")
def driver_not_loaded(s: Snapshot) -> Iterator[Finding]:
    """GC103: the user-space driver is there but the kernel module is not loaded."""
    d, sysinfo = s.driver, s.system
    not_loaded = d.nvml_error == "DriverNotLoaded" or (
        sysinfo.nvidia_module_loaded is False and d.nvml_library_version is not None
    )
    if not not_loaded or s.gpus or sysinfo.nouveau_loaded or facts.container_without_gpus(s):
        return
    if sysinfo.wsl and sysinfo.linux_driver_in_wsl:
        return  # GC111 explains it
    ev = [_nvml(s), f"nvidia kernel module loaded: {sysinfo.nvidia_module_loaded}"]
    if d.nvidia_smi_error:
        ev.append(f"nvidia-smi: {d.nvidia_smi_error}")
    if pci := _pci(s):
        ev.append(pci)
    if sysinfo.wsl:
        fix = (
            "In WSL2 the GPU comes from the Windows driver: update the NVIDIA driver on "
            "Windows, run `wsl --update` and `wsl --shutdown` in Windows, then reopen WSL."
        )
    else:
        fix = (
            "Load the module and read its error: `sudo modprobe nvidia; sudo dmesg | grep -i nvrm`. "
            f"After a kernel update rebuild it for kernel {sysinfo.kernel or '$(uname -r)'}: "
            "`sudo dkms autoinstall` (or reinstall the driver package), then reboot. With "
            "Secure Boot on, enrol the module's MOK key or sign the module."
        )
    yield Finding(
        "GC103",
        ERROR,
        "The NVIDIA driver is installed but its kernel module is not loaded",
        tuple(ev),
        fix=fix,
    )


@rule("GC104")
def nouveau(s: Snapshot) -> Iterator[Finding]:
    """GC104: the open-source nouveau driver holds the GPU."""
    if not s.system.nouveau_loaded:
        return
    broken = not facts.healthy_gpus(s)
    ev = [
        "nouveau in /proc/modules",
        f"nvidia kernel module loaded: {s.system.nvidia_module_loaded}",
    ]
    if pci := _pci(s):
        ev.append(pci)
    yield Finding(
        "GC104",
        ERROR if broken else WARN,
        "The nouveau driver is loaded" + (" and owns the GPU" if broken else ""),
        tuple(ev),
        fix="Blacklist nouveau and rebuild the initramfs: `printf 'blacklist nouveau\\noptions "
        "nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && sudo "
        "update-initramfs -u` (Fedora/RHEL: `sudo dracut --force`), install the NVIDIA driver "
        "if missing, then reboot.",
    )


@rule("GC105")
def version_mismatch(s: Snapshot) -> Iterator[Finding]:
    """GC105: kernel module and user-space libraries from different driver versions."""
    d = s.driver
    kmod, lib = (
        facts.driver_core(d.kernel_module_version),
        facts.driver_core(d.nvml_library_version),
    )
    differ = kmod is not None and lib is not None and kmod != lib
    if d.nvml_error != "LibRmVersionMismatch" and not differ:
        return
    ev = [_nvml(s)]
    if d.kernel_module_version:
        ev.append(f"kernel module: {d.kernel_module_version} (/proc/driver/nvidia/version)")
    if d.nvml_library_version:
        ev.append(f"NVML library: {d.nvml_library_version}")
    if d.nvidia_smi_error:
        ev.append(f"nvidia-smi: {d.nvidia_smi_error}")
    branch = f"nvidia-driver-{kmod[0]}" if kmod else "<your nvidia driver package>"
    if s.system.container:
        fix = (
            "The driver libraries inside this container differ from the host's kernel module: "
            "do not install driver packages in the image; let nvidia-container-toolkit inject "
            "them (`docker run --gpus all ...`). If the host itself was upgraded, reboot the host."
        )
    else:
        fix = (
            "Reboot (`sudo reboot`): the driver libraries were upgraded but the old kernel module "
            "is still loaded. Without a reboot, when no process uses the GPU: `sudo rmmod "
            "nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`. To stop "
            f"unattended upgrades doing it again: `sudo apt-mark hold {branch}` (and its libs)."
        )
    yield Finding(
        "GC105",
        ERROR,
        "NVIDIA driver/library version mismatch: a reboot is needed",
        tuple(ev),
        fix=fix,
    )


@rule("GC106")
def nvml_missing(s: Snapshot) -> Iterator[Finding]:
    """GC106: the kernel module is there but libnvidia-ml (the user-space driver) is not."""
    hint = facts.host_driver_hint(s)
    if s.driver.nvml_error != "LibraryNotFound" or hint is None:
        return
    if facts.container_without_gpus(s) or s.system.wsl:
        return  # GC107 / the WSL rules explain it
    ev = [_nvml(s), hint]
    if s.system.container:
        fix = (
            "This container has GPU device nodes but no driver libraries: start it with "
            "`docker run --gpus all ...` (nvidia-container-toolkit injects libnvidia-ml and "
            "libcuda) instead of passing /dev/nvidia* with --device."
        )
    else:
        kmod = facts.driver_core(s.driver.kernel_module_version)
        pkg = f"libnvidia-compute-{kmod[0]}" if kmod else "libnvidia-compute-<branch>"
        fix = (
            "Install the user-space driver of the same version as the kernel module (Ubuntu: "
            f"`sudo apt install {pkg}`, or reinstall the full driver package), then check with "
            "`ldconfig -p | grep libnvidia-ml` and `nvidia-smi`."
        )
    yield Finding(
        "GC106",
        ERROR,
        "The NVML library (libnvidia-ml) is missing although the NVIDIA kernel module is loaded",
        tuple(ev),
        fix=fix,
    )


@rule("GC113")
def nvml_other_error(s: Snapshot) -> Iterator[Finding]:
    """GC113: NVML failed for a reason no other rule explains."""
    err = s.driver.nvml_error
    if err in _HANDLED_NVML or s.gpus:
        return
    ev = [_nvml(s)]
    if s.driver.nvidia_smi_error:
        ev.append(f"nvidia-smi: {s.driver.nvidia_smi_error}")
    ev.extend(s.driver.errors[:3])
    yield Finding(
        "GC113",
        ERROR,
        f"NVML could not be initialised ({err})",
        tuple(ev),
        fix="Run `nvidia-smi` and `sudo dmesg | grep -i -E 'nvrm|xid'` to see what the driver "
        "reports; a reboot clears most transient driver states.",
    )


@rule("GC115")
def jetson(s: Snapshot) -> Iterator[Finding]:
    """GC115: a Jetson (Tegra) board: an integrated GPU that NVML does not serve; torch decides."""
    if not facts.is_tegra(s):
        return
    rt = s.torch_runtime
    ev = [f"Tegra: {s.system.tegra or 'integrated GPU seen by torch'}", _nvml(s)]
    if rt is not None and rt.status == "ok" and rt.cuda_available:
        names = ", ".join(sorted({d.name or "?" for d in rt.devices})) or "?"
        ev.append(f"torch child: CUDA available, {rt.device_count} device(s): {names}")
        yield Finding(
            "GC115",
            INFO,
            "Jetson (Tegra) GPU: NVML does not cover it; torch runs on it",
            tuple(ev),
            fix="Nothing to fix. Jetson has no NVML (no nvidia-smi health data): use `tegrastats` "
            "or `jtop` for clocks, temperature and power.",
        )
        return
    if rt is None or rt.status in ("skipped", "not-installed"):
        ev.append("torch child: not run" if rt is None else f"torch child: {rt.status}")
        sev, title = INFO, "Jetson (Tegra) board: only torch can tell whether its GPU works"
    else:
        ev.append(f"torch child: status={rt.status}, cuda_available={rt.cuda_available}")
        if rt.error:
            ev.append(f"torch said: {rt.error.strip().splitlines()[-1][:200]}")
        sev, title = ERROR, "torch cannot use the Jetson (Tegra) GPU"
    yield Finding(
        "GC115",
        sev,
        title,
        tuple(ev),
        fix="Install the PyTorch build for your JetPack release from NVIDIA (the 'PyTorch for "
        "Jetson' wheels, or an NVIDIA L4T PyTorch container): the aarch64 wheels on PyPI do not "
        "drive Tegra's integrated GPU. `cat /etc/nv_tegra_release` shows the L4T release.",
    )

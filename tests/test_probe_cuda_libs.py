"""CUDA toolkits and libraries: fake toolkits, pip wheel layout, conda, LD_LIBRARY_PATH, and
this real machine (a CUDA 13.0 toolkit at /usr/local/cuda-13.0, no driver)."""

from __future__ import annotations

import os
import pathlib
import stat
import sys
import time

import pytest

from gpucheck.probe import collect, cuda_libs
from gpucheck.probe.cuda_libs import library_name, native_entry, probe_cuda
from gpucheck.probe.pyenv import PyEnv, inspect_python
from gpucheck.snapshot import Library, Toolkit

TEXT = pathlib.Path(__file__).parent / "fixtures" / "text"
NO_SITE = PyEnv(executable=sys.executable, path=())


def touch(path: pathlib.Path, text: str = "") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def script(path: pathlib.Path, body: str) -> pathlib.Path:
    touch(path, "#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
    root = tmp_path / "root"
    tk = root / "usr/local/cuda-12.4"
    touch(tk / "version.json", (TEXT / "cuda_version.json").read_text())
    touch(tk / "include/cuda_runtime_api.h", "#define CUDART_VERSION  12040\n")
    script(tk / "bin/nvcc", "echo 'Cuda compilation tools, release 12.4, V12.4.131'")
    touch(tk / "lib64/libcudart.so.12.4.127")
    os.symlink("libcudart.so.12.4.127", tk / "lib64/libcudart.so.12")
    touch(tk / "lib64/libcudart_static.a")
    os.symlink("cuda-12.4", root / "usr/local/cuda")  # relative, so it stays inside the tree
    old = root / "opt/cuda-11.8"
    touch(old / "targets/x86_64-linux/include/cuda_runtime_api.h", "#define CUDART_VERSION 11080\n")
    touch(root / "usr/local/cuda-notakit/README")
    return root


def test_library_names():
    assert library_name("libcudnn.so.9.1.0") == "cudnn"
    assert library_name("libnvidia-ml.so.1") == "nvml"
    assert library_name("libnvJitLink.so.12") == "nvjitlink"
    assert library_name("libcublasLt.so.12") == "cublasLt"
    assert library_name("libcuda.so") == "cuda"
    for other in ("libcudnn_ops.so.9", "libcudart_static.a", "libcudart.so.12.txt", "libc.so.6"):
        assert library_name(other) is None


def test_native_entry():
    assert native_entry("libc6,x86-64", "x86_64")
    assert not native_entry("libc6", "x86_64")  # i386 copy on a multiarch host
    assert native_entry("libc6,AArch64", "aarch64")
    assert native_entry("libc6", "riscv64")  # unknown tag: keep


def test_toolkits_deduplicated_and_versioned(root):
    env = {"PATH": "/nonexistent", "CUDA_HOME": "/usr/local/cuda"}
    toolkits = cuda_libs.find_toolkits(str(root), env)
    assert toolkits == (
        Toolkit(
            version="12.4",
            path="/usr/local/cuda-12.4",
            source="CUDA_HOME",
            nvcc="/usr/local/cuda-12.4/bin/nvcc",
        ),
        Toolkit(version="11.8", path="/opt/cuda-11.8", source="folder", nvcc=None),
    )


def test_nvcc_wrapper_on_path_names_the_toolkit(root, tmp_path):
    bindir = tmp_path / "bin"
    script(bindir / "nvcc", f'exec {root}/usr/local/cuda-12.4/bin/nvcc "$@"')
    toolkits = cuda_libs.find_toolkits(str(root), {"PATH": str(bindir)})
    assert toolkits[0] == Toolkit(
        version="12.4",
        path="/usr/local/cuda-12.4",
        source="nvcc",
        nvcc="/usr/local/cuda-12.4/bin/nvcc",
    )
    assert [t.path for t in toolkits] == ["/usr/local/cuda-12.4", "/opt/cuda-11.8"]


def test_stray_nvcc_still_reported(tmp_path):
    bindir = tmp_path / "stray" / "bin"
    script(bindir / "nvcc", "echo 'Cuda compilation tools, release 12.1, V12.1.105'")
    (tk,) = cuda_libs.find_toolkits(str(tmp_path / "empty"), {"PATH": str(bindir)})
    assert (tk.version, tk.source, tk.path) == ("12.1", "nvcc", str(tmp_path / "stray"))


def test_every_cudnn_and_every_source(root, tmp_path):
    site = tmp_path / "venv/lib/python3.11/site-packages"
    cudnn = site / "nvidia/cudnn"
    touch(cudnn / "lib/libcudnn.so.9")
    touch(cudnn / "lib/libcudnn_ops.so.9")
    touch(cudnn / "include/cudnn_version.h", (TEXT / "cudnn_version_9_1_0.h").read_text())
    (site / "nvidia_cudnn_cu12-9.1.0.70.dist-info").mkdir()
    touch(site / "nvidia/cu13/lib/libcublas.so.13")
    (site / "nvidia_cublas-13.0.0.19.dist-info").mkdir()
    touch(site / "nvidia/cuda_runtime/lib/libcudart.so.12")  # no dist-info: named by folder
    # Paths from the environment are read under the fake root, like every system path.
    touch(root / "opt/cudnn-8.9/lib/libcudnn.so.8.9.2")
    touch(root / "opt/conda/envs/x/lib/libcudart.so.12.1.105")
    old_cudnn = "/opt/cudnn-8.9/lib"
    conda = "/opt/conda/envs/x"
    env = {
        "PATH": "/nonexistent",
        "LD_LIBRARY_PATH": f"{old_cudnn}:relative/dir",
        "CONDA_PREFIX": conda,
        "CUDA_HOME": "/usr/local/cuda",
    }
    pyenv = PyEnv(executable=sys.executable, path=(str(site), str(tmp_path / "other")))
    cuda = probe_cuda(str(root), env, pyenv)
    assert cuda.errors == ()
    assert set(cuda.libraries) == {
        Library("cudnn", "8.9.2", f"{old_cudnn}/libcudnn.so.8.9.2", "LD_LIBRARY_PATH"),
        Library("cudart", "12.4.127", "/usr/local/cuda-12.4/lib64/libcudart.so.12", "toolkit"),
        Library("cudnn", "9.1.0", f"{cudnn}/lib/libcudnn.so.9", "pip:nvidia-cudnn-cu12"),
        Library("cublas", "13.0.0", f"{site}/nvidia/cu13/lib/libcublas.so.13", "pip:nvidia-cublas"),
        Library(
            "cudart",
            "12",
            f"{site}/nvidia/cuda_runtime/lib/libcudart.so.12",
            "pip:nvidia/cuda_runtime",
        ),
        Library("cudart", "12.1.105", f"{conda}/lib/libcudart.so.12.1.105", "conda"),
    }
    assert sorted(lib.version for lib in cuda.libs("cudnn")) == ["8.9.2", "9.1.0"]


def test_same_file_found_twice_is_listed_once(root):
    lib64 = "/usr/local/cuda-12.4/lib64"
    env = {
        "PATH": "/nonexistent",
        "LD_LIBRARY_PATH": f"{lib64}:{lib64}",
        "CUDA_HOME": "/usr/local/cuda",
    }
    cuda = probe_cuda(str(root), env, NO_SITE)
    assert cuda.libraries == (
        Library("cudart", "12.4.127", f"{lib64}/libcudart.so.12", "LD_LIBRARY_PATH"),
    )


REAL_TOOLKIT = "/usr/local/cuda-13.0"


@pytest.mark.skipif(not os.path.isdir(REAL_TOOLKIT), reason="needs the CUDA 13.0 toolkit on disk")
def test_this_machine_finds_cuda_13_toolkit():
    env = dict(os.environ)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    cuda = probe_cuda("/", env, inspect_python(None, env))
    assert (
        Toolkit(version="13.0", path=REAL_TOOLKIT, source="nvcc", nvcc=f"{REAL_TOOLKIT}/bin/nvcc")
        in cuda.toolkits
    )
    assert len([t for t in cuda.toolkits if t.path == REAL_TOOLKIT]) == 1  # /usr/local/cuda deduped
    cudart = [lib for lib in cuda.libs("cudart") if lib.path.startswith(REAL_TOOLKIT)]
    assert cudart and cudart[0].version == "13.0"  # bare soname: the toolkit gives the minor


@pytest.mark.skipif(not os.path.isdir(REAL_TOOLKIT), reason="needs the CUDA 13.0 toolkit on disk")
def test_this_machine_collect_is_fast_and_complete():
    collect(torch_child=False)  # warm the file cache
    times = []
    for _ in range(3):
        start = time.perf_counter()
        snap = collect(torch_child=False)
        times.append(time.perf_counter() - start)
    assert sorted(times)[1] < 0.5, times  # the design target for the static probe
    assert any(t.path == REAL_TOOLKIT and t.version == "13.0" for t in snap.cuda.toolkits)
    if not os.path.exists("/proc/driver/nvidia/version"):
        assert snap.driver.version is None and snap.gpus == ()
        assert snap.driver.nvml_error in ("LibraryNotFound", "DriverNotLoaded")
    assert snap.torch.installed and snap.torch.version.startswith("2.")

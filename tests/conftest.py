import json
import os
import pathlib

import pytest
from factories import MODELS

from gpucheck.snapshot import (
    Driver,
    Gpu,
    PythonInfo,
    Snapshot,
    System,
    Torch,
    TorchDevice,
    TorchRuntime,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SNAPSHOTS = FIXTURES / "snapshots"
SCHEMAS = ROOT / "docs" / "schema"
# Examples per fuzz test: a quick pass in `make test`, minutes of fuzzing with `make fuzz`.
FUZZ_EXAMPLES = int(os.environ.get("GPUCHECK_FUZZ_EXAMPLES", "300"))


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    # Renderer tests compare text: colour settings of the developer's shell must not leak in.
    for var in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM"):
        monkeypatch.delenv(var, raising=False)


H100 = MODELS["h100"]  # tests/factories.py: the one place the test machines are typed out


def healthy_gpu_snapshot(n_gpus: int = 2) -> Snapshot:
    """A small, healthy two-GPU machine built in code (the recorded fixtures are richer)."""
    gpus = tuple(
        Gpu(
            index=i,
            name=H100.name,
            uuid=f"GPU-00000000-0000-0000-0000-00000000000{i}",
            pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
            compute_capability="9.0",
            memory_total_bytes=H100.memory,
            memory_used_bytes=566755328,
            pcie_gen_current=5,
            pcie_gen_max=5,
            pcie_width_current=16,
            pcie_width_max=16,
            temperature_c=31,
            power_draw_w=71.5,
            power_limit_w=H100.power_limit_w,
            clock_event_reasons=("gpu_idle",),
            ecc_enabled=True,
            ecc_uncorrected_volatile=0,
            persistence_mode=True,
            mig_enabled=False,
            retired_pages_pending=False,
            remapped_rows_pending=False,
            remapped_rows_failure=False,
        )
        for i in range(n_gpus)
    )
    return Snapshot(
        system=System(
            os="linux",
            arch="x86_64",
            distro="Ubuntu 22.04.4 LTS",
            kernel="5.15.0-105-generic",
            python=PythonInfo(version="3.11.7", executable="/usr/bin/python3"),
            nouveau_loaded=False,
            nvidia_module_loaded=True,
            shm_bytes=64 * 2**30,
        ),
        driver=Driver(
            version="550.54.14",
            cuda_version="12.4",
            source="nvml",
            kernel_module_version="550.54.14",
            nvml_library_version="12.550.54.14",
        ),
        gpus=gpus,
        torch=Torch(
            installed=True,
            version="2.5.1+cu124",
            local="cu124",
            cuda="12.4",
            source="importlib.metadata",
        ),
        torch_runtime=TorchRuntime(
            status="ok",
            import_time_s=2.1,
            version="2.5.1+cu124",
            cuda_version="12.4",
            cuda_available=True,
            device_count=n_gpus,
            arch_list=("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
            cudnn_version="9.1.0",
            bf16_supported=True,
            devices=tuple(
                TorchDevice(
                    index=i,
                    name=H100.name,
                    capability="9.0",
                    matmul_ok=True,
                    matmul_max_error=0.0,
                )
                for i in range(n_gpus)
            ),
        ),
        schema_version=1,
    )


@pytest.fixture
def healthy_snapshot() -> Snapshot:
    return healthy_gpu_snapshot()


@pytest.fixture
def write_snapshot(tmp_path):
    def write(snapshot: Snapshot, name: str = "snap.json") -> str:
        path = tmp_path / name
        path.write_text(snapshot.to_json())
        return str(path)

    return write


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate_report(doc: dict) -> None:
    """Validate a JSON report against the published schema (self-contained: no outside $ref)."""
    import jsonschema

    jsonschema.Draft202012Validator(load_schema("report")).validate(doc)

"""`make bench`, part 2: for each injected hang, how long until gpucheck reported it.

Each fault is injected from outside, the way it happens on a real machine: a torch or pynvml
package that hangs on import or init (first on PYTHONPATH), an nvidia-smi that never returns
(first on PATH), a benchmark child that hangs. Target: the configured timeout plus one second.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
import tempfile
import time

HANG = "import time\ntime.sleep(600)\n"
NVML_MISSING = """
class NVMLError(Exception):
    pass
class NVMLError_LibraryNotFound(NVMLError):
    pass
def nvmlInit():
    raise NVMLError_LibraryNotFound(12)
"""
NVML_HANG = """
import time
class NVMLError(Exception):
    pass
def nvmlInit():
    time.sleep(600)
"""


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _faults(tmp: pathlib.Path) -> list[tuple[str, float, list[str], dict[str, str]]]:
    """(name, configured timeout, gpucheck arguments, extra environment) for each hang."""
    _write(tmp / "torch_hang/torch/__init__.py", HANG)
    _write(tmp / "nvml_hang/pynvml.py", NVML_HANG)
    _write(tmp / "nvml_missing/pynvml.py", NVML_MISSING)
    _write(tmp / "bench_hang/finetune/__init__.py", "")
    _write(tmp / "bench_hang/finetune/__main__.py", HANG)
    smi = tmp / "smi_hang/nvidia-smi"
    _write(smi, "#!/bin/sh\nsleep 600\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    from gpucheck.probe.fallbacks import SMI_TIMEOUT

    path = f"{tmp / 'smi_hang'}{os.pathsep}{os.environ.get('PATH', '')}"
    return [
        (
            "torch import hangs",
            2.0,
            ["check", "--no-bench", "--torch-timeout", "2"],
            {"PYTHONPATH": str(tmp / "torch_hang")},
        ),
        (
            "NVML init hangs (--timeout)",
            2.0,
            ["probe", "--timeout", "2"],
            {"PYTHONPATH": str(tmp / "nvml_hang")},
        ),
        # Asked only when NVML fails, as it does on a machine without a driver.
        (
            "nvidia-smi hangs",
            SMI_TIMEOUT,
            ["probe"],
            {"PATH": path, "PYTHONPATH": str(tmp / "nvml_missing")},
        ),
        (
            "benchmark child hangs",
            3.0,
            ["bench", "--bench-timeout", "3", "--bench-device", "cpu"],
            {"PYTHONPATH": str(tmp / "bench_hang")},
        ),
        (
            "whole run (--timeout) with torch hanging",
            3.0,
            ["check", "--no-bench", "--torch-timeout", "60", "--timeout", "3"],
            {"PYTHONPATH": str(tmp / "torch_hang")},
        ),
    ]


def fault_times() -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = pathlib.Path(folder)
        for name, timeout, args, extra in _faults(tmp):
            env = {**os.environ, **extra}
            out = tmp / "report.json"
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "gpucheck", *args, "--json", str(out), "-q"],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout + 60,
            )
            elapsed = time.perf_counter() - start
            reported = json.loads(out.read_text()) if out.exists() else {}
            ids = sorted(
                {f["id"] for f in reported.get("findings", []) if f["severity"] == "error"}
            )
            rows.append(
                {
                    "fault": name,
                    "timeout_s": timeout,
                    "elapsed_s": round(elapsed, 2),
                    "exit_code": proc.returncode,
                    "error_findings": ids,
                }
            )
            out.unlink(missing_ok=True)
    return rows


def main() -> int:
    print("Time to report an injected hang (target: the configured timeout + 1 s):")
    rows = fault_times()
    for row in rows:
        verdict = "ok" if row["elapsed_s"] <= row["timeout_s"] + 1.0 else "SLOW"
        print(
            f"  {row['fault']:42} timeout {row['timeout_s']:4.1f} s  reported after "
            f"{row['elapsed_s']:5.2f} s  {verdict}  exit {row['exit_code']} {','.join(row['error_findings'])}"
        )
    if len(sys.argv) > 1:
        from gpucheck.io import write_atomic

        write_atomic(sys.argv[1], json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["elapsed_s"] <= r["timeout_s"] + 1.0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A real two-node Slurm cluster on this host, for the fleet tests.

Debian's slurm-wlm and munge: one slurmctld and two slurmd daemons (nodes n1 and n2, both on
this host), each with its own spool folder and pid file. Everything lives in one fresh folder:
its own munge key and socket (AuthInfo=socket=...), free ports, so that it cannot meet another
cluster on the same machine. Stopped by the pids it recorded, never by process name.

Where the tools (or root) are missing, the tests that need it skip with the reason; under
CI=true such a skip is a failure instead, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

NODES = ("n1", "n2")
TOOLS = ("munged", "slurmctld", "slurmd", "srun", "scontrol", "sinfo")
START_TIMEOUT = 30.0


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail under CI=true, where the tools are installed by .ci/run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason} (.ci/run installs slurm-wlm, munge and prometheus)")
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"not installed: {', '.join(missing)}")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.conf = folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        for var in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURMD_NODENAME"):
            self.env.pop(var, None)
        self.pid_files: list[Path] = []

    def run(self, *argv: str, timeout: float = 30.0, env: dict | None = None, check: bool = False):
        return subprocess.run(
            list(argv),
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def state(self, node: str) -> str:
        return self.run("sinfo", "-h", "-n", node, "-o", "%T", timeout=10).stdout.strip()

    def reason(self, node: str) -> str:
        out = self.run("sinfo", "-R", "-h", "-n", node, "-o", "%E", timeout=10).stdout
        return out.strip()

    def resume(self, node: str) -> None:
        self.run("scontrol", "update", f"NodeName={node}", "State=RESUME", timeout=10)
        self.wait_idle(node)

    def wait_idle(self, *nodes: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if all(self.state(n) == "idle" for n in nodes or NODES):
                return
            time.sleep(0.3)
        raise RuntimeError(f"slurm nodes not idle: {[self.state(n) for n in nodes or NODES]}")

    def stop(self) -> None:
        pids = []
        for f in self.pid_files:
            try:
                pids.append(int(f.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours would count as alive: reap it if it is one
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def start_cluster(folder: Path) -> SlurmCluster:
    """Start munged, slurmctld and two slurmd in `folder` (the recipe, isolated)."""
    require_tools(*TOOLS)
    if os.geteuid() != 0:
        skip_or_fail("the Slurm test cluster runs its daemons as root")
    c = SlurmCluster(folder)
    host = socket.gethostname().split(".")[0]
    munge = folder / "munge"
    munge.mkdir(mode=0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = munge / "munge.socket"
    ctld_port, p1, p2 = _free_ports(3)
    for sub in ("state", "spool/n1", "spool/n2"):
        (folder / sub).mkdir(parents=True)
    c.conf.write_text(
        f"""ClusterName=gpucheckfleet
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool/%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.%n.pid
SlurmctldLogFile={folder}/ctld.log
SlurmdLogFile={folder}/d.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
ReturnToService=2
NodeName=n1 NodeHostname={host} Port={p1} CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname={host} Port={p2} CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    c.pid_files = [
        munge / "munged.pid",
        folder / "slurmctld.pid",
        folder / "slurmd.n1.pid",
        folder / "slurmd.n2.pid",
    ]
    try:
        c.run(
            "munged",
            "--force",
            f"--socket={sock}",
            f"--key-file={key}",
            f"--log-file={munge}/munged.log",
            f"--pid-file={munge}/munged.pid",
            f"--seed-file={munge}/munged.seed",
            timeout=20,
            check=True,
        )
        c.run("slurmctld", "-f", str(c.conf), timeout=20, check=True)
        for node in NODES:
            c.run("slurmd", "-f", str(c.conf), "-N", node, timeout=20, check=True)
        c.wait_idle()
    except (subprocess.SubprocessError, RuntimeError) as exc:
        logs = "".join(
            p.read_text(errors="replace")[-2000:] for p in folder.glob("*.log") if p.is_file()
        )
        c.stop()
        raise RuntimeError(f"the Slurm test cluster did not start: {exc}\n{logs}") from exc
    return c

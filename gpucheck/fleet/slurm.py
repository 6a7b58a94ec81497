"""Slurm adapter: drain this node on an error finding; list the nodes of a job.

`gpucheck check --drain-on-error` is meant for Slurm's HealthCheckProgram, a prolog or an
epilog. The rules (docs/fleet.md): drain only on an `error` finding; read `scontrol show node`
first and leave a node alone that is already drained or down (whoever did it, their reason
stays); never resume a node. Every scontrol call has a timeout.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpucheck.fleet._run import run
from gpucheck.fleet.hostlist import HostlistError, expand_hostlist

SCONTROL_TIMEOUT = 10.0
# Slurm stores any length, but `sinfo -R` shows the first 20 characters by default and admins
# read the rest in `scontrol show node`: the ids come first, the whole reason stays short.
REASON_MAX = 80
REASON_PREFIX = "gpucheck:"
# States in which the node is already out of service: gpucheck does not touch it.
HANDS_OFF = ("DRAIN", "DOWN", "FAIL", "MAINT", "REBOOT")


@dataclass(frozen=True)
class DrainOutcome:
    action: str  # "drained" | "left-alone" | "failed"
    node: str
    message: str  # one line for stderr


def node_name(env: Mapping[str, str]) -> str:
    """The name Slurm knows this node by: $SLURMD_NODENAME, else the short host name."""
    return env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def drain_reason(findings: Sequence[tuple[str, str]]) -> str:
    """`gpucheck: GC203,GC301 <title of the first>`, at most REASON_MAX characters.

    findings: (id, title) of the error findings, worst first.
    """
    ids = ",".join(dict.fromkeys(i for i, _ in findings))
    title = findings[0][1] if findings else ""
    text = f"{REASON_PREFIX} {ids} {title}".strip()
    text = re.sub(r"[\s\"'\\]+", " ", text)  # one line, nothing a shell or scontrol may split
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3].rstrip() + "..."


def parse_node(text: str) -> tuple[set[str], str | None]:
    """State flags and Reason from `scontrol show node NAME` (State=IDLE+DRAIN -> {IDLE, DRAIN})."""
    state = re.search(r"\bState=(\S+)", text)
    flags = set(state.group(1).upper().replace("*", "").split("+")) if state else set()
    reason = re.search(r"^\s*Reason=(.*?)(?:\s+\[[^\]]*\])?\s*$", text, re.M)
    return flags, reason.group(1) if reason else None


def decide(flags: set[str], reason: str | None) -> str | None:
    """Why the node must be left alone, or None when gpucheck may drain it."""
    busy = sorted(f for f in flags if any(f.startswith(h) for h in HANDS_OFF))
    if not busy:
        return None
    if reason and reason.startswith(REASON_PREFIX):
        return f"already {'+'.join(busy).lower()} by gpucheck ({reason})"
    return f"already {'+'.join(busy).lower()}" + (
        f" for another reason: {reason}" if reason else ""
    )


def drain_on_error(
    findings: Sequence[tuple[str, str]], env: Mapping[str, str] | None = None
) -> DrainOutcome | None:
    """Drain this node when `findings` (error ids and titles) is not empty; None otherwise."""
    if not findings:
        return None
    env = os.environ if env is None else env
    node = node_name(env)
    shown = run(["scontrol", "show", "node", node], timeout=SCONTROL_TIMEOUT, env=env)
    if shown.returncode != 0:
        why = shown.error or _first_line(shown.stderr or shown.stdout)
        return DrainOutcome("failed", node, f"not drained: `scontrol show node {node}`: {why}")
    flags, reason = parse_node(shown.stdout)
    if not flags:
        return DrainOutcome("failed", node, f"not drained: no State= for {node} in scontrol")
    hands_off = decide(flags, reason)
    if hands_off:
        return DrainOutcome("left-alone", node, f"{node} not drained: {hands_off}")
    why = drain_reason(findings)
    argv = ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={why}"]
    done = run(argv, timeout=SCONTROL_TIMEOUT, env=env)
    if done.returncode != 0:
        err = done.error or _first_line(done.stderr or done.stdout)
        return DrainOutcome("failed", node, f"not drained: `scontrol update` on {node}: {err}")
    return DrainOutcome("drained", node, f"drained {node}: {why}")


def job_nodes(env: Mapping[str, str]) -> list[str] | None:
    """The nodes of the Slurm job this runs in ($SLURM_JOB_NODELIST), or None outside a job.

    Expanded by `scontrol show hostnames` where it works, else by our own hostlist expansion.
    """
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        return None
    r = run(["scontrol", "show", "hostnames", nodelist], timeout=SCONTROL_TIMEOUT, env=env)
    if r.returncode == 0 and r.stdout.strip():
        return list(dict.fromkeys(r.stdout.split()))
    try:
        return expand_hostlist(nodelist)
    except HostlistError:
        return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else "no output"

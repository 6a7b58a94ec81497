"""What happened to a distributed launch, and its findings (GC620-GC623). Pure.

Inputs are what the launcher recorded: torchrun's exit and stderr (its failure summary names
the root-cause rank, host and exit code), each rank's last stage from its status file, and the
tail of each local rank's stderr log.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from gpucheck.findings import Finding, Severity

# The order in which finetune/distributed.py (and the training loop) records stages.
STAGES = ("spawned", "rendezvous", "joined", "training", "evaluating", "allreduce", "done")
TIMEOUT_WORDS = re.compile(r"timed out|timeout|watchdog", re.IGNORECASE)
RDZV_WORDS = re.compile(r"Rendezvous(Timeout|Connection|Closed)Error|RendezvousError")
DEBUG_HINT = (
    "Set NCCL_DEBUG=INFO (and TORCH_DISTRIBUTED_DEBUG=DETAIL, TORCH_CPP_LOG_LEVEL=INFO) to see "
    "what each rank was doing; LOGLEVEL=INFO shows torchrun's rendezvous"
)
SLOW_RANK_RATIO = 0.7  # as GC406: a rank under 0.7x the median samples/s is flagged


@dataclass(frozen=True)
class RankState:
    rank: int
    local_rank: int | None = None
    host: str | None = None
    device: str | None = None
    stage: str | None = None  # last stage recorded; None: never wrote one
    exitcode: int | None = None  # from torchrun's failure summary
    error: str | None = None  # its last stderr line

    def who(self) -> str:
        where = ", ".join(x for x in (self.host, self.device) if x)
        return f"rank {self.rank}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class LaunchOutcome:
    status: str  # ok | timeout | crash | never-joined | hung | start-failed
    world_size: int
    nnodes: int
    endpoint: str | None
    returncode: int | None
    duration_s: float
    timeout: float
    ranks: tuple[RankState, ...] = ()
    missing: tuple[int, ...] = ()  # ranks that never reached the rendezvous
    hung: tuple[int, ...] = ()  # ranks that stopped in a collective (or behind the others)
    failed: tuple[int, ...] = ()  # ranks that crashed (root cause first)
    stderr_tail: str = ""
    command: tuple[str, ...] = ()
    leftovers: int = 0  # processes the sweep had to kill after torchrun ended

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranks"] = [asdict(r) for r in self.ranks]
        return d


_FAILURE = re.compile(
    r"host\s*:\s*(?P<host>\S+)\s*\n\s*rank\s*:\s*(?P<rank>\d+)\s*\(local_rank:\s*(?P<local>\d+)\)"
    r"\s*\n\s*exitcode\s*:\s*(?P<code>-?\d+)"
)


def parse_failures(stderr: str) -> list[dict[str, Any]]:
    """torchrun's failure summary, root cause first: [{rank, local_rank, host, exitcode}]."""
    root, _, others = stderr.rpartition("Root Cause (first observed failure):")
    ordered = [others, root] if root else [stderr]
    out, seen = [], set()
    for text in ordered:
        for m in _FAILURE.finditer(text):
            rank = int(m["rank"])
            if rank not in seen:
                seen.add(rank)
                out.append(
                    {
                        "rank": rank,
                        "local_rank": int(m["local"]),
                        "host": m["host"],
                        "exitcode": int(m["code"]),
                    }
                )
    return out


def _last_error(log: str | None) -> str | None:
    if not log:
        return None
    lines = [ln.strip() for ln in log.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):  # the exception line, not torch's C++ frame dump
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln) or "Error:" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else None


def _stage_index(stage: str | None) -> int:
    return STAGES.index(stage) if stage in STAGES else -1


def classify(
    *,
    spec_world: int,
    nproc_per_node: int,
    nnodes: int,
    endpoint: str | None,
    returncode: int | None,
    timed_out: bool,
    start_error: str | None,
    stderr: str,
    statuses: dict[int, dict],
    rank_logs: dict[int, str],
    duration_s: float,
    timeout: float,
    command: tuple[str, ...] = (),
    leftovers: int = 0,
) -> LaunchOutcome:
    failures = parse_failures(stderr)
    by_rank = {f["rank"]: f for f in failures}
    ranks = []
    # On several nodes this agent sees its own ranks only; the rest are another agent's to name.
    known = range(spec_world) if nnodes == 1 else sorted(set(statuses) | set(by_rank))
    for r in known:
        st = statuses.get(r, {})
        fail = by_rank.get(r, {})
        local = st.get("local_rank", fail.get("local_rank"))
        ranks.append(
            RankState(
                rank=r,
                local_rank=local,
                host=st.get("host") or fail.get("host"),
                device=st.get("device"),
                stage=st.get("stage"),
                exitcode=fail.get("exitcode"),
                error=_last_error(rank_logs.get(local))
                if local is not None and (fail or timed_out)
                else None,
            )
        )
    base = dict(
        world_size=spec_world,
        nnodes=nnodes,
        endpoint=endpoint,
        returncode=returncode,
        duration_s=round(duration_s, 3),
        timeout=timeout,
        ranks=tuple(ranks),
        stderr_tail=stderr[-2000:],
        command=command,
        leftovers=leftovers,
    )
    if start_error:
        return LaunchOutcome(status="start-failed", **base, failed=())
    if returncode == 0 and not timed_out:
        return LaunchOutcome(status="ok", **base)
    seen = [r for r in ranks if r.stage is not None]
    missing = tuple(r.rank for r in ranks if _stage_index(r.stage) < STAGES.index("rendezvous"))
    if not ranks:  # no rank of ours ever started: the node-level rendezvous did not complete
        missing = tuple(range(spec_world))
    if missing and (seen or timed_out or RDZV_WORDS.search(stderr)):
        return LaunchOutcome(status="never-joined", **base, missing=missing)
    root = failures[0] if failures else None
    root_state = next((r for r in ranks if root and r.rank == root["rank"]), None)
    timeout_error = root_state is not None and TIMEOUT_WORDS.search(root_state.error or "")
    if timed_out or timeout_error:
        alive = [r for r in ranks if r.stage != "done"]
        if alive:
            # the rank furthest behind is the one the others wait for
            low = min(_stage_index(r.stage) for r in alive)
            behind = [r.rank for r in alive if _stage_index(r.stage) == low]
            high = max(_stage_index(r.stage) for r in alive)
            hung = tuple(behind) if low < high else tuple(r.rank for r in alive)
        else:
            hung = ()
        return LaunchOutcome(status="hung", **base, hung=hung)
    return LaunchOutcome(status="crash", **base, failed=tuple(f["rank"] for f in failures))


def _names(outcome: LaunchOutcome, ranks: tuple[int, ...]) -> str:
    states = {r.rank: r for r in outcome.ranks}
    return ", ".join(states[r].who() if r in states else f"rank {r}" for r in ranks)


def _evidence(outcome: LaunchOutcome) -> tuple[str, ...]:
    lines = [
        f"world size {outcome.world_size} on {outcome.nnodes} node(s); {outcome.duration_s:.1f} s of {outcome.timeout:g} s"
    ]
    for r in outcome.ranks[:16]:
        bits = [f"last stage {r.stage or 'none recorded'}"]
        if r.exitcode is not None:
            bits.append(f"exit code {r.exitcode}")
        if r.error:
            bits.append(r.error)
        lines.append(f"{r.who()}: " + "; ".join(bits))
    if outcome.leftovers:
        lines.append(f"{outcome.leftovers} process(es) of the run were still alive and were killed")
    return tuple(lines)


def launch_findings(outcome: LaunchOutcome) -> list[Finding]:
    """GC620 never joined, GC621 hung in a collective, GC622 crashed."""
    s = outcome.status
    if s == "never-joined":
        if outcome.missing and len(outcome.missing) == outcome.world_size and outcome.nnodes > 1:
            title = (
                f"the rendezvous at {outcome.endpoint} did not complete: not every one of the "
                f"{outcome.nnodes} nodes joined within {outcome.timeout:g} s"
            )
        else:
            title = f"{len(outcome.missing)} rank(s) never joined the process group: " + _names(
                outcome, outcome.missing
            )
        return [
            Finding(
                "GC620",
                Severity.ERROR,
                title,
                _evidence(outcome),
                "Start gpucheck (or torchrun) on every node with the same --nnodes, "
                "--rdzv-endpoint and --rdzv-id; check that each node reaches the endpoint "
                f"(`nc -z HOST PORT`) and that no firewall blocks it. {DEBUG_HINT}.",
                _gpu(outcome, outcome.missing),
            )
        ]
    if s == "hung":
        return [
            Finding(
                "GC621",
                Severity.ERROR,
                "a collective hung: the run waited on "
                + (_names(outcome, outcome.hung) or "every rank"),
                _evidence(outcome),
                "A GPU pair that cannot talk (PCIe ACS, IOMMU: GC603/GC604), a wrong "
                "NCCL_SOCKET_IFNAME (GC602) or a rank stuck before the collective. "
                f"{DEBUG_HINT}; `gpucheck node` checks the interconnect alone.",
                _gpu(outcome, outcome.hung),
            )
        ]
    if s in ("crash", "start-failed"):
        first = outcome.failed[:1]
        who = _names(outcome, first) if first else "torchrun"
        return [
            Finding(
                "GC622",
                Severity.ERROR,
                f"the distributed run crashed on {who}",
                _evidence(outcome)
                + (() if first else tuple(outcome.stderr_tail.strip().splitlines()[-3:])),
                "Rerun that rank's command by hand with FINETUNE_DEBUG=1 for the traceback "
                f"(`{' '.join(outcome.command[:6])} ...`). {DEBUG_HINT}.",
                _gpu(outcome, first),
            )
        ]
    return []


def _gpu(outcome: LaunchOutcome, ranks: tuple[int, ...]) -> int | None:
    for r in outcome.ranks:
        if r.rank in ranks and r.device and r.device.startswith("cuda:"):
            return int(r.device.partition(":")[2])
    return None


def slow_rank_findings(distributed: dict[str, Any] | None) -> list[Finding]:
    """GC623: the slowest rank well under the median (rank 0's `distributed` block)."""
    slow = (distributed or {}).get("slowest_rank") or {}
    ratio = slow.get("ratio_to_median")
    if not isinstance(ratio, (int, float)) or ratio >= SLOW_RANK_RATIO:
        return []
    where = ", ".join(str(x) for x in (slow.get("host"), slow.get("device")) if x)
    others = [
        f"rank {r.get('rank')}: {r.get('samples_per_s')} samples/s"
        for r in (distributed or {}).get("ranks") or ()
    ]
    gpu = slow.get("device") or ""
    return [
        Finding(
            "GC623",
            Severity.WARN,
            f"rank {slow.get('rank')} ({where}) trains at {ratio:.2f}x the median rank: every "
            "rank waits for it",
            tuple(others[:16]),
            "A throttled or degraded GPU, or a slower link to it: compare its health findings "
            "(GC306-GC308) and `gpucheck node` (matmul GC613, host bandwidth GC611).",
            int(gpu.partition(":")[2]) if gpu.startswith("cuda:") else None,
        )
    ]

"""Checks before a distributed launch: bad input is one line and exit 2, before anything runs.

`--nproc-per-node 0`, more local ranks than usable GPUs, a rendezvous endpoint that does not
parse, does not resolve or cannot be reached, or a local port held by another program.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time

from gpucheck.errors import UsageError


def parse_endpoint(text: str) -> tuple[str, int]:
    """ "HOST:PORT" or "[v6]:PORT" -> (host, port); torchrun's default port is 29400."""
    host, port = text, "29400"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise UsageError(f"--rdzv-endpoint {text!r}: expected HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--rdzv-endpoint {text!r}: port {port!r} is not a number") from None
    if not 1 <= number <= 65535:
        raise UsageError(f"--rdzv-endpoint {text!r}: port {number} is out of range 1-65535")
    return host, number


def resolve(host: str, timeout: float = 5.0) -> list[str]:
    """The host's addresses; getaddrinfo has no timeout of its own, so it runs in a thread."""
    box: list = []

    def work() -> None:
        try:
            box.append(sorted({ai[4][0] for ai in socket.getaddrinfo(host, None)}))
        except (OSError, UnicodeError) as exc:
            box.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise UsageError(f"--rdzv-endpoint: resolving {host!r} took over {timeout:g} s")
    if isinstance(box[0], Exception):
        raise UsageError(f"--rdzv-endpoint: host {host!r} does not resolve ({box[0]})")
    return box[0]


def is_local(addresses: list[str]) -> bool:
    """Whether any of the addresses is this machine's (loopback, or bindable here)."""
    for addr in addresses:
        try:
            if ipaddress.ip_address(addr.split("%")[0]).is_loopback:
                return True
        except ValueError:
            continue
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr, 0))
            return True
        except OSError:
            continue
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    f = line.split()
                    if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f[9])
        except (OSError, ValueError):
            continue
    return inodes


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process of ours listening on the local port, if we can see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    return int(pid), fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return None


def _port_free(host_addr: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_addr, port))
        except OSError:
            return False
    return True


def _reachable(addr: str, port: int, window: float) -> str | None:
    """None when a TCP connect succeeds within `window` seconds (retrying: the first node may
    start a little later than this one); else the last error."""
    end = time.monotonic() + window
    last = "no attempt"
    while True:
        try:
            with socket.create_connection((addr, port), timeout=min(3.0, max(0.2, window))):
                return None
        except OSError as exc:
            last = exc.strerror or str(exc)
        if time.monotonic() >= end:
            return last
        time.sleep(0.5)


def check_endpoint(text: str, nnodes: int, connect_window: float = 20.0) -> tuple[str, int]:
    """Validate --rdzv-endpoint before launching torchrun; raises UsageError (exit 2)."""
    host, port = parse_endpoint(text)
    addresses = resolve(host)
    if is_local(addresses):
        addr = next((a for a in addresses if "." in a), addresses[0])
        if _port_free(addr, port):
            return host, port
        owner = port_owner(port)
        # On a multi-node run another agent on this host may host the c10d store already.
        if (
            nnodes > 1
            and owner
            and "torch.distributed.run" in owner[1]
            or (nnodes > 1 and owner and "torchrun" in owner[1])
        ):
            return host, port
        who = f" by pid {owner[0]} ({owner[1][:80]})" if owner else ""
        raise UsageError(
            f"--rdzv-endpoint {text}: port {port} is already in use{who}; choose another port"
        )
    err = _reachable(addresses[0], port, connect_window)
    if err is not None:
        raise UsageError(
            f"--rdzv-endpoint {text}: cannot connect within {connect_window:g} s ({err}); start "
            "the first node's run first, or check the address and the firewall"
        )
    return host, port


def check_nproc(nproc: int, usable_gpus: int) -> None:
    if nproc < 1:
        raise UsageError(f"--nproc-per-node {nproc}: needs at least 1 process")
    if usable_gpus and nproc > usable_gpus:
        raise UsageError(
            f"--nproc-per-node {nproc}: only {usable_gpus} usable GPU(s) here, one rank per GPU"
        )

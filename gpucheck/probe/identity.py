"""Which machine this is: host name, Slurm node name and machine id, for fleet reports."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

from gpucheck.probe._util import read_text, rooted
from gpucheck.snapshot import Identity

# systemd's machine-id(5): 32 lower-case hex digits. Anything else is not an id we can trust.
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def probe_identity(root: str, env: Mapping[str, str]) -> Identity:
    """Host name, $SLURMD_NODENAME (set by slurmd for jobs, prologs and health checks) and
    /etc/machine-id (or D-Bus's copy) where readable; a value that is not there is None."""
    try:
        hostname = socket.gethostname() or None
    except OSError:
        hostname = None
    machine_id = None
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        text = (read_text(rooted(root, path), limit=4096) or "").strip()
        if _MACHINE_ID.fullmatch(text):
            machine_id = text
            break
    return Identity(
        hostname=hostname,
        slurm_node_name=env.get("SLURMD_NODENAME") or None,
        machine_id=machine_id,
    )

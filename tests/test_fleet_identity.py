"""The snapshot names its node: host name, $SLURMD_NODENAME, /etc/machine-id where readable."""

from __future__ import annotations

import socket

from gpucheck.probe.identity import probe_identity
from gpucheck.snapshot import Identity, Snapshot, System

MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"


def test_reads_machine_id_and_slurm_node_name(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text(MACHINE_ID + "\n")
    ident = probe_identity(str(tmp_path), {"SLURMD_NODENAME": "gpu07"})
    assert ident == Identity(socket.gethostname(), "gpu07", MACHINE_ID)


def test_falls_back_to_dbus_and_refuses_what_is_not_an_id(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("uninitialized\n")  # systemd's first-boot value
    dbus = tmp_path / "var" / "lib" / "dbus"
    dbus.mkdir(parents=True)
    (dbus / "machine-id").write_text(MACHINE_ID)
    assert probe_identity(str(tmp_path), {}).machine_id == MACHINE_ID
    (dbus / "machine-id").write_text("")
    ident = probe_identity(str(tmp_path), {"SLURMD_NODENAME": ""})
    assert ident.machine_id is None and ident.slurm_node_name is None


def test_identity_round_trips_and_old_snapshots_still_load():
    snap = Snapshot(system=System(os="linux", arch="x86_64"), identity=Identity("h", "n1", None))
    assert Snapshot.from_json(snap.to_json()) == snap
    old = snap.to_dict()
    del old["identity"]
    assert Snapshot.from_dict(old).identity is None


def test_collect_records_the_identity(tmp_path):
    from gpucheck.probe import collect

    snap = collect(torch_child=False, env={"PATH": "", "SLURMD_NODENAME": "n2"}, root=str(tmp_path))
    assert snap.identity is not None and snap.identity.slurm_node_name == "n2"

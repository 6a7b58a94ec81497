import os
import socket
import stat
import subprocess
import sys
import threading

import pytest
from conftest import ROOT

from gpucheck.errors import UsageError
from gpucheck.io import output_kind, read_text, write_atomic


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    write_atomic(str(target), "new contents")
    assert target.read_text() == "new contents"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no temp file left behind


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_atomic(str(tmp_path / "nope" / "r.json"), "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_is_a_usage_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UsageError, match="cannot write"):
            write_atomic(str(folder / "r.json"), "x")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UsageError, match="No space left"):
        write_atomic(str(target), "new")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_read_text_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot read snapshot"):
        read_text(str(tmp_path / "missing.json"), "snapshot")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_text(str(junk), "snapshot")
    with pytest.raises(UsageError, match="cannot read"):
        read_text(str(tmp_path), "snapshot")


# --- output paths that are not plain files (issue 10) --------------------------------------


def test_symlink_is_followed_and_its_target_replaced(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(str(link), "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "later.json")
    write_atomic(str(link), "made")
    assert link.is_symlink() and (tmp_path / "later.json").read_text() == "made"


def test_character_device_is_written_through_not_replaced(tmp_path):
    link = tmp_path / "null"  # a link to /dev/null: the old code replaced the link, never /dev/null
    link.symlink_to("/dev/null")
    write_atomic(str(link), "discarded")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    write_atomic(str(fifo), "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_stdout_path_is_written_through(tmp_path):
    out = tmp_path / "log.txt"
    out.write_text("kept\n")
    code = "from gpucheck.io import write_atomic; write_atomic('/dev/stdout', 'appended\\n')"
    with open(out, "a") as fh:  # `gpucheck --json /dev/stdout >> log.txt`
        subprocess.run([sys.executable, "-c", code], stdout=fh, check=True, cwd=ROOT, timeout=60)
    assert out.read_text() == "kept\nappended\n"


def test_full_device_is_a_usage_error():
    with pytest.raises(UsageError, match="No space left on device"):
        write_atomic("/dev/full", "x")


@pytest.mark.parametrize("kind", ["folder", "socket"])
def test_other_special_files_are_refused(tmp_path, kind):
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    with pytest.raises(UsageError, match=f"it is a {kind}"):
        output_kind(str(path))
    with pytest.raises(UsageError, match=f"it is a {kind}"):
        write_atomic(str(path), "x")


def test_empty_path_is_a_usage_error():
    with pytest.raises(UsageError, match="empty"):
        write_atomic("", "x")


def test_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(str(target), "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_atomic(str(tmp_path / "r.json"), "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode


def test_binary_input_is_one_line(tmp_path):
    nul = tmp_path / "nul.json"
    nul.write_text('{"a": "\x00"}')
    with pytest.raises(UsageError, match="is a binary file"):
        read_text(str(nul), "snapshot")


def test_fifo_without_a_reader_is_an_error_not_a_hang(tmp_path, monkeypatch):
    import gpucheck.io

    monkeypatch.setattr(gpucheck.io, "FIFO_WAIT_S", 0.3)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="no reader on the pipe"):
        write_atomic(str(fifo), "nobody listens")

import os
import stat

import pytest

from gpucheck.errors import UsageError
from gpucheck.io import read_text, write_atomic


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

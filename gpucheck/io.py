"""File input and output at the edge of the CLI: atomic writes, one loader per input kind.

Output paths (`--json`, `--junit`, `--markdown`, `--dump-snapshot`, finetune's `--json`):
- a regular file, new or existing, is replaced atomically (temp file in the same folder, then
  rename); an existing file keeps its mode, a new one gets 0666 less the umask;
- a symlink is followed and its target is replaced, the link stays;
- a character device or FIFO (`/dev/null`, a named pipe) and this process's own open files
  (`/dev/stdout`, `/dev/fd/N`, whatever they point at) are written through, never replaced;
- a folder, socket or block device is refused (UsageError, exit 2).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from typing import TYPE_CHECKING

from gpucheck.errors import UsageError

if TYPE_CHECKING:
    from gpucheck.compat import CompatTable
    from gpucheck.snapshot import Snapshot

MAX_INPUT_BYTES = 64 * 1024 * 1024  # a snapshot or table larger than this is not ours
FIFO_WAIT_S = 30.0  # how long a named pipe given as an output may take to get its reader

_REFUSED = (
    (stat.S_ISDIR, "it is a folder"),
    (stat.S_ISSOCK, "it is a socket"),
    (stat.S_ISBLK, "it is a block device"),
)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def output_kind(path: str) -> str:
    """ "through" (write into it as it is) or "replace" (atomic rename); UsageError when neither.

    Called for every output before any probing, so that a bad path costs nothing.
    """
    if not path:
        raise UsageError("an output file name is empty")
    try:
        st = os.stat(path)  # follows symlinks, including /dev/stdout -> /proc/self/fd/1
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_why(exc)}") from None
    if st is not None:
        for test, why in _REFUSED:
            if test(st.st_mode):
                raise UsageError(f"cannot write {path}: {why}")
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or _own_fd(path) is not None:
            if not os.access(path, os.W_OK):
                raise UsageError(f"cannot write {path}: permission denied")
            return "through"
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    return "replace"


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader never sees a half-written file.

    See the module docstring for what happens to links, devices and pipes.
    Raises UsageError (exit 2) when the path cannot be written (missing or read-only folder,
    a folder or socket at the path, a full disk).
    """
    if output_kind(path) == "through":
        _write_through(path, text)
        return
    real = os.path.realpath(path)  # a symlink's target is replaced, the link is kept
    folder = os.path.dirname(real)
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gpucheck-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_why(exc)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)  # mkstemp makes 0600: give the report its real mode
            os.fsync(fh.fileno())
        os.replace(tmp, real)
    except OSError as exc:
        _remove_quietly(tmp)
        raise UsageError(f"cannot write {path}: {_why(exc)}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _own_fd(path: str) -> int | None:
    """N when `path` names this process's open file N (/dev/stdout, /dev/fd/N, /proc/self/fd/N).

    Such a file, even a regular one (`gpucheck --json /dev/stdout >> log`), is written through
    the descriptor itself: renaming over it would drop the log, reopening it would lose `>>`.
    """
    for _ in range(8):  # a short chain of links: /dev/stdout -> /proc/self/fd/1
        match = _FD_PATH.fullmatch(path)
        if match and match.group(1) in ("self", str(os.getpid()), None):
            return int(match.group(2))
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return None


_FD_PATH = re.compile(r"/(?:proc/(self|\d+)|dev)/fd/(\d+)")


def _write_through(path: str, text: str) -> None:
    data = text.encode("utf-8")
    fd = _own_fd(path)
    try:
        fd = os.dup(fd) if fd is not None else _open_for_writing(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_why(exc)}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass  # the reader left (`| head`): what it wanted, it has
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_why(exc)}") from None
    finally:
        os.close(fd)


def _open_for_writing(path: str) -> int:
    """Open a device or FIFO without creating or truncating it; a FIFO gets FIFO_WAIT_S for
    its reader to come (never a hang: no reader at all is an error)."""
    end = time.monotonic() + FIFO_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO with no reader yet
                raise
            if time.monotonic() >= end:
                raise OSError(
                    errno.ENXIO, f"no reader on the pipe within {FIFO_WAIT_S:g} s"
                ) from None
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)  # a slow reader slows the write, as a pipe does
        return fd


def _umask() -> int:
    try:  # Linux states it without changing it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


# --- stdout --------------------------------------------------------------------------------


def is_output_error(exc: OSError) -> bool:
    """A write that failed because the output is full or gone (stdout to /dev/full, a pipe)."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE, errno.EIO)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:  # pragma: no cover - no /dev/null
        pass


# --- input ---------------------------------------------------------------------------------


def read_text(path: str, what: str) -> str:
    """Read a user-supplied text file, or raise UsageError with one clear line."""
    if not path:
        raise UsageError(f"the {what} file name is empty")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {_why(exc)}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_INPUT_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    if "\x00" in text:  # never in JSON text: a binary file that happens to decode
        raise UsageError(f"{what} {path} is a binary file, not text")
    return text


def load_snapshot(path: str) -> Snapshot:
    """`--from-snapshot FILE`: the one loader (size cap, one-line errors, exit 2)."""
    from gpucheck.snapshot import Snapshot, SnapshotError

    try:
        return Snapshot.from_json(read_text(path, "snapshot"))
    except SnapshotError as exc:
        raise UsageError(f"snapshot {path}: {exc}") from None


def load_compat(path: str | None) -> CompatTable | None:
    """`--compat FILE`: the one loader; None (no flag) means the built-in table."""
    if path is None:
        return None
    from gpucheck import compat

    try:
        return compat.load_table(read_text(path, "compatibility table"), source=path)
    except compat.CompatError as exc:
        raise UsageError(f"compatibility table {path}: {exc}") from None


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

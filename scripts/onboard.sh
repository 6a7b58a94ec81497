#!/bin/sh
# Onboard a bare lab machine that has only Python 3: create a venv, install gpucheck, then let
# `gpucheck bootstrap` install the PyTorch build that fits this machine and verify it.
#
#   sh scripts/onboard.sh [VENV_DIR] [-- extra gpucheck bootstrap flags]
#
# Environment: PYTHON (default python3), GPUCHECK_SPEC (a pip requirement: default this checkout
# when the script runs from one, else "gpu-path-check" from PyPI; `gpucheck` there is an unrelated
# project). Set GPUCHECK_YES=1 to skip the confirmation. A venv this script created is removed
# again when a later step fails, is cancelled or is interrupted.
set -eu

PYTHON=${PYTHON:-python3}
VENV=.venv-gpu
if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then
    VENV=$1
    shift
fi
if [ "$#" -gt 0 ] && [ "$1" = "--" ]; then
    shift
fi

say() { printf '%s\n' "onboard: $*"; }
die() { printf '%s\n' "onboard: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH; install Python 3.10 or newer first"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$PYTHON" -V 2>&1) is too old: gpucheck needs Python 3.10 or newer"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON has no venv/ensurepip module (Debian/Ubuntu: apt install python3-venv)"

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -z "${GPUCHECK_SPEC:-}" ]; then
    if [ -f "$here/../pyproject.toml" ] && grep -q 'name = "gpu-path-check"' "$here/../pyproject.toml"; then
        GPUCHECK_SPEC=$(CDPATH= cd -- "$here/.." && pwd)
    else
        GPUCHECK_SPEC=gpu-path-check
    fi
fi

# The same requirement with the `bench` extra: "name==1.0" -> "name[bench]==1.0", a folder or
# wheel -> "path[bench]", "name @ url" -> "name[bench] @ url"; anything else unchanged.
with_bench() {
    "$PYTHON" - "$1" <<'PY'
import os, re, sys
spec = sys.argv[1].strip()
m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?(\s*(?:[=<>!~@;(].*)?)$", spec)
if os.path.exists(spec) and not spec.endswith("]"):
    print(spec + "[bench]")
elif m and "://" not in m.group(1):
    extras = [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]
    rest = m.group(3)
    rest = " " + rest.lstrip() if rest.lstrip().startswith("@") else rest  # "name[x] @ url"
    print(f"{m.group(1)}[{','.join(dict.fromkeys(extras + ['bench']))}]{rest}")
else:
    print(spec)
PY
}
BENCH_SPEC=$(with_bench "$GPUCHECK_SPEC") || die "cannot read GPUCHECK_SPEC=$GPUCHECK_SPEC"

created=
finished=
cleanup() {
    status=$?
    if [ -n "$created" ] && [ -z "$finished" ]; then
        rm -rf -- "$VENV"
        say "removed $VENV, which this run created"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -f "$VENV/pyvenv.cfg" ]; then
    say "using the existing environment $VENV"
else
    [ -e "$VENV" ] && die "$VENV exists and is not a virtual environment"
    say "creating $VENV"
    created=1
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || die "$VENV has no bin/python"

say "installing gpucheck ($GPUCHECK_SPEC)"
"$PY" -m pip install --disable-pip-version-check --quiet "$GPUCHECK_SPEC" \
    || die "installing $GPUCHECK_SPEC failed"

# gpucheck's benchmark extras come from the same place gpucheck itself came from
set -- --venv "$VENV" --gpucheck-spec "$BENCH_SPEC" "$@"
if [ "${GPUCHECK_YES:-}" = "1" ]; then
    set -- "$@" --yes
fi
say "running: gpucheck bootstrap $*"
# Not exec: when bootstrap installs no torch (cancelled, failed and undone), the venv created
# above goes too; one that holds torch stays, for a look at why its check failed.
rc=0
"$PY" -m gpucheck bootstrap "$@" || rc=$?
if [ "$rc" -eq 0 ] || "$PY" -I -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' 2>/dev/null; then
    finished=1
fi
exit "$rc"

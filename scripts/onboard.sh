#!/bin/sh
# Onboard a bare lab machine that has only Python 3: create a venv, install gpucheck, then let
# `gpucheck bootstrap` install the PyTorch build that fits this machine and verify it.
#
#   sh scripts/onboard.sh [VENV_DIR] [-- extra gpucheck bootstrap flags]
#
# Environment: PYTHON (default python3), GPUCHECK_SPEC (default: this checkout when the script
# runs from one, else "gpucheck" from PyPI). Set GPUCHECK_YES=1 to skip the confirmation.
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
    if [ -f "$here/../pyproject.toml" ] && grep -q 'name = "gpucheck"' "$here/../pyproject.toml"; then
        GPUCHECK_SPEC=$(CDPATH= cd -- "$here/.." && pwd)
    else
        GPUCHECK_SPEC=gpucheck
    fi
fi

if [ -f "$VENV/pyvenv.cfg" ]; then
    say "using the existing environment $VENV"
else
    [ -e "$VENV" ] && die "$VENV exists and is not a virtual environment"
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || die "$VENV has no bin/python"

say "installing gpucheck ($GPUCHECK_SPEC)"
"$PY" -m pip install --disable-pip-version-check --quiet "$GPUCHECK_SPEC"

# gpucheck's benchmark extras come from the same place gpucheck itself came from
set -- --venv "$VENV" --gpucheck-spec "${GPUCHECK_SPEC}[bench]" "$@"
if [ "${GPUCHECK_YES:-}" = "1" ]; then
    set -- "$@" --yes
fi
say "running: gpucheck bootstrap $*"
exec "$PY" -m gpucheck bootstrap "$@"

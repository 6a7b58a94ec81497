"""`gpucheck bootstrap`: create (or fix) an environment with the recommended torch, then verify it.

    gpucheck bootstrap [--venv DIR | --current] [--dry-run] [--yes] [--uv]
                       [--index-url URL] [--find-links DIR] [--no-index]

Every command is shown before it runs and, unless --yes, confirmed. The installer's output
streams through. On failure the environment is left as it was:

- a new --venv DIR is built in place and removed again when a step fails. (It is not built in
  a temporary folder and renamed: a venv's scripts carry its absolute path, so a renamed venv
  has broken `bin/pip` and console scripts.)
- an existing venv (--venv DIR that holds pyvenv.cfg) or --current: `pip freeze` is recorded
  first; on failure the packages the run added are uninstalled and the ones it changed are
  put back at their recorded versions (best effort; said so when it cannot).

Then `<env python> -m gpucheck check --json` runs inside the environment (the checks and the
smoke benchmark) and its verdict is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucheck import proc
from gpucheck.bootstrap_guard import (
    CONFIG_OFF,
    NETWORK_ERRORS,
    PIP_NET_FLAGS,
    check_installed,
    installed_versions,
    isolated_env,
    pip_network_config,
    planned_versions,
    torch_packages,
)
from gpucheck.errors import UsageError

INSTALL_TIMEOUT_S = 3600.0  # torch wheels are large and lab mirrors can be slow
CHECK_TIMEOUT_S = 1800.0
SMALL_TIMEOUT_S = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--venv",
        metavar="DIR",
        help="create (or repair) the virtual environment DIR (default: .venv-gpu)",
    )
    where.add_argument(
        "--current", action="store_true", help="install into the environment gpucheck runs in"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--yes", "-y", action="store_true", help="do not ask before running the commands"
    )
    parser.add_argument(
        "--uv", action="store_true", help="use uv (uv venv, uv pip install) instead of venv and pip"
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        help="install torch from this index instead of the recommended one (mirrors, tests)",
    )
    parser.add_argument("--find-links", metavar="DIR", help="also look for wheels in DIR")
    parser.add_argument(
        "--no-index", action="store_true", help="use only --find-links, no package index"
    )
    parser.add_argument(
        "--gpucheck-spec",
        metavar="SPEC",
        default=None,
        help="what to install for gpucheck itself (default: this checkout or gpu-path-check[bench] from PyPI)",
    )
    parser.add_argument("--torch", metavar="SPEC", help="a torch constraint, e.g. '2.5.*'")
    parser.add_argument(
        "--compat", metavar="FILE", help="a compatibility table to use instead of the built-in one"
    )
    parser.add_argument(
        "--from-snapshot", metavar="FILE", help="decide from a recorded snapshot instead of probing"
    )
    parser.add_argument(
        "--install-timeout",
        type=float,
        default=INSTALL_TIMEOUT_S,
        metavar="S",
        help=f"limit for each install command (default {INSTALL_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--check-timeout",
        type=float,
        default=CHECK_TIMEOUT_S,
        metavar="S",
        help=f"limit for the check inside the environment (default {CHECK_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="do not run the checks inside the environment afterwards",
    )


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]
    timeout: float
    isolated: bool = False  # the installer ignores its configuration: only the shown sources

    def shown(self) -> str:
        prefix = ""
        if self.isolated:  # the command as it runs: without the installer's configuration
            uv = Path(self.argv[0]).name.startswith("uv")
            prefix = "UV_NO_CONFIG=1 " if uv else f"{CONFIG_OFF[0]}={CONFIG_OFF[1]} "
        return prefix + shlex.join(self.argv)


def _say(text: str) -> None:
    print(text, flush=True)


def env_python(env_dir: Path) -> Path:
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def default_gpucheck_spec() -> str:
    """This source checkout when gpucheck runs from one, else the same release from PyPI."""
    from gpucheck import __dist__, __version__

    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file() and f'name = "{__dist__}"' in pyproject.read_text(encoding="utf-8"):
            return f"{root}[bench]"
    except OSError:
        pass
    # The distribution is not called `gpucheck`: that name on PyPI is an unrelated project.
    return f"{__dist__}[bench]=={__version__}"


def _installer(args: argparse.Namespace, python: Path) -> list[str]:
    if args.uv:
        uv = shutil.which("uv")
        if uv is None:
            raise UsageError("--uv: no `uv` on PATH")
        return [uv, "pip", "install", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check"]


def _source_flags(args: argparse.Namespace, index_url: str | None) -> list[str]:
    flags: list[str] = []
    if args.no_index:
        flags.append("--no-index")
    elif args.index_url:
        flags += ["--index-url", args.index_url]
    elif index_url:
        flags += ["--index-url", index_url]
    if args.find_links:
        flags += ["--find-links", args.find_links]
    return flags


def plan(args: argparse.Namespace, rec: Any, env_dir: Path | None, create: bool) -> list[Step]:
    python = env_python(env_dir) if env_dir is not None else Path(sys.executable)
    steps: list[Step] = []
    if create:
        if args.uv:
            uv = shutil.which("uv")
            if uv is None:
                raise UsageError("--uv: no `uv` on PATH")
            argv = (uv, "venv", "--seed", "--python", sys.executable, str(env_dir))
        else:
            argv = (sys.executable, "-m", "venv", str(env_dir))
        steps.append(Step("create the environment", argv, SMALL_TIMEOUT_S))
    installer = _installer(args, python)
    if rec.action != "none" or create:
        net = [] if args.uv else list(PIP_NET_FLAGS)
        steps.append(
            Step(
                f"install torch {rec.build}",
                tuple(installer + torch_packages(rec) + _source_flags(args, rec.index_url) + net),
                args.install_timeout,
                isolated=True,
            )
        )
    spec = args.gpucheck_spec or default_gpucheck_spec()
    # gpucheck and its bench extras from the default index; torch is already satisfied
    extra = []
    if args.no_index:
        extra.append("--no-index")
    if args.find_links:
        extra += ["--find-links", args.find_links]
    steps.append(
        Step(
            "install gpucheck and the benchmark's packages",
            tuple(installer + [spec] + extra),
            args.install_timeout,
        )
    )
    return steps


def _run(step: Step, env: dict[str, str]) -> tuple[bool, str]:
    _say(f"$ {step.shown()}")
    # The torch step keeps its stderr, to tell an unreachable index from other failures; its
    # progress (stdout) streams through.
    child = proc.Child(
        step.argv,
        timeout=step.timeout,
        env=env,
        stdout="inherit",
        stderr="capture" if step.isolated else "inherit",
        stdin_inherit=True,
    )
    if child.start_exc is not None:
        exc = child.start_exc
        return False, f"{step.what}: cannot run {step.argv[0]}: {exc.strerror or exc}"
    done = child.wait()
    if done.timed_out:
        return False, f"{step.what}: timed out after {step.timeout:.0f} s"
    if done.returncode != 0 and any(marker in done.stderr for marker in NETWORK_ERRORS):
        return False, _index_hint(step)  # one line instead of pip's retry noise
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return False, f"{step.what}: exit status {done.returncode}"
    return True, ""


def _index_hint(step: Step) -> str:
    argv = list(step.argv)
    where = argv[argv.index("--index-url") + 1] if "--index-url" in argv else "the package index"
    return (
        f"{step.what}: cannot reach {where}. Through a mirror: pass --index-url URL (a mirror "
        "of that index); without network: download the wheels elsewhere and pass "
        "--find-links DIR --no-index"
    )


def _freeze(python: Path, env: dict[str, str]) -> dict[str, str] | None:
    """name (normalised) -> the freeze line, or None when pip cannot say."""
    done = proc.run(
        [str(python), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
        timeout=SMALL_TIMEOUT_S,
        env=env,
    )
    if done.returncode != 0:
        return None
    out = {}
    for line in done.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split("==")[0].split(" @ ")[0].strip().lower().replace("_", "-")
        out[name] = line
    return out


def _shown_ok(cmd: list[str], timeout: float, env: dict[str, str]) -> bool:
    """Run `cmd` with its output on the terminal; True when it ran to the end and succeeded."""
    return proc.run(cmd, timeout=timeout, env=env, stdout="inherit", stderr="inherit").ok


def _restore(
    python: Path, before: dict[str, str], env: dict[str, str], args: argparse.Namespace
) -> bool:
    after = _freeze(python, env)
    if after is None:
        return False
    added = sorted(set(after) - set(before))
    changed = sorted(n for n in set(after) & set(before) if after[n] != before[n])
    ok = True
    if added:
        _say(f"restoring: uninstalling {', '.join(added)}")
        cmd = [str(python), "-m", "pip", "uninstall", "-y", "--disable-pip-version-check", *added]
        ok &= _shown_ok(cmd, SMALL_TIMEOUT_S, env)
    if changed:
        _say(f"restoring: reinstalling {', '.join(before[n] for n in changed)}")
        cmd = [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            *[before[n] for n in changed],
        ]
        if args.find_links:
            cmd += ["--find-links", args.find_links]
        if args.no_index:
            cmd.append("--no-index")
        ok &= _shown_ok(cmd, args.install_timeout, env)
    final = _freeze(python, env)
    return ok and final == before


def _confirm(steps: list[Step], yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin or not sys.stdin.isatty():
        _say("not running without confirmation on a non-interactive input: pass --yes")
        return False
    try:
        answer = input(f"Run these {len(steps)} command(s)? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def verify(
    python: Path, env: dict[str, str], timeout: float
) -> tuple[int, dict[str, Any] | None, str]:
    """Run the checks and the smoke benchmark inside the environment; (rc, report, error)."""
    # -I and a neutral folder: the gpucheck that runs is the environment's, not a checkout in cwd
    argv = [str(python), "-I", "-m", "gpucheck", "check", "--json"]
    _say(f"$ {shlex.join(argv)}")
    child = proc.Child(argv, timeout=timeout, env=env, cwd=tempfile.gettempdir())
    if child.start_exc is not None:
        exc = child.start_exc
        return 127, None, f"cannot run {python}: {exc.strerror or exc}"
    done = child.wait()
    if done.timed_out:
        return 124, None, f"the check timed out after {timeout:.0f} s"
    if done.stderr:
        sys.stderr.write(done.stderr)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stdout or done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return done.returncode, None, f"the check printed no JSON report ({tail[0]})"
    return done.returncode, report if isinstance(report, dict) else None, ""


def run(args: argparse.Namespace) -> int:
    from gpucheck.recommend import recommend
    from gpucheck.recommend.cli import load_compat_arg, print_human, probe_machine
    from gpucheck.recommend.engine import parse_torch_spec

    try:
        parse_torch_spec(args.torch)
    except ValueError as exc:
        raise UsageError(f"--torch: {exc}") from None
    if args.find_links and not Path(args.find_links).is_dir():
        raise UsageError(f"--find-links: {args.find_links} is not a folder")
    for name in ("install_timeout", "check_timeout"):
        value = getattr(args, name)
        if not math.isfinite(value) or value <= 0:  # nan compares false with everything
            raise UsageError(f"--{name.replace('_', '-')}: must be a positive number of seconds")
    table = load_compat_arg(args.compat)
    machine = probe_machine(args, table)

    create = False
    env_dir: Path | None = None
    if not args.current:
        env_dir = Path(args.venv or ".venv-gpu").absolute()
        if env_dir.exists():
            if not (env_dir / "pyvenv.cfg").is_file():
                raise UsageError(f"--venv: {env_dir} exists and is not a virtual environment")
        else:
            create = True
            if not env_dir.parent.is_dir():
                raise UsageError(f"--venv: folder {env_dir.parent} does not exist")
        # the environment's installed torch is not this process's; a new one has none
        machine = machine.replace(torch=None)
    rec = recommend(machine, table=table, torch_spec=args.torch)
    print_human(rec)
    if rec.action in ("unsupported", "upgrade-driver", "change-python") or rec.torch is None:
        _say("bootstrap: nothing installed: " + (rec.reasons[0] if rec.reasons else rec.action))
        return 1

    steps = plan(args, rec, env_dir, create)
    _say("\nbootstrap will run:")
    for i, step in enumerate(steps, 1):
        _say(f"  {i}. {step.what}:\n     {step.shown()}")
    if args.dry_run:
        _say("(dry run: nothing was run)")
        return 0
    if not _confirm(steps, args.yes):
        _say("bootstrap: cancelled; it ran none of these commands")
        return 1

    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("__PYVENV_LAUNCHER__", None)
    python = env_python(env_dir) if env_dir is not None else Path(sys.executable)
    before = None if create else _freeze(python, env)
    if not create and before is None:
        _say("bootstrap: cannot record `pip freeze` of the environment; stopping before any change")
        return 1

    try:
        error = _install(steps, env, python, planned_versions(rec) if steps_install(steps) else {})
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM/SIGHUP, which proc turns into the same): the children are ended;
        # undo what was done so far, then let the CLI exit 128+signal.
        _say("\nbootstrap: interrupted")
        _undo(create, env_dir, python, before, env, args)
        raise
    if error:
        _say(f"bootstrap: failed: {error}")
        _undo(create, env_dir, python, before, env, args)
        return 1

    if args.no_check:
        _say(f"bootstrap: done; torch {rec.build} installed in {python}")
        return 0
    rc, report, error = verify(python, env, args.check_timeout)
    if report is None:
        _say(f"bootstrap: installed, but the check inside the environment failed: {error}")
        return 1
    verdict = report.get("verdict", "?")
    findings = [f for f in report.get("findings", []) if f.get("severity") in ("error", "warn")]
    _say(f"\nverdict inside {env_dir or 'the current environment'}: {verdict}")
    for f in findings:
        _say(f"  {f.get('severity')}: {f.get('id')} {f.get('title')}")
    if env_dir is not None:
        activate = env_dir / ("Scripts/activate" if os.name == "nt" else "bin/activate")
        _say(f"activate it with: . {activate}")
    return 0 if rc == 0 and verdict != "FAIL" else 1


def steps_install(steps: list[Step]) -> bool:
    return any(step.isolated for step in steps)


def _install(
    steps: list[Step], env: dict[str, str], python: Path, planned: dict[str, str]
) -> str | None:
    """Run the steps; then check that the environment holds the planned build. Why not, or None."""
    for step in steps:
        step_env = env
        if step.isolated:
            step_env = isolated_env(env, pip_network_config(python, env))
        ok, error = _run(step, step_env)
        if not ok:
            return error
    if not planned:
        return None
    # A later step (gpucheck's extras, a constraint in pip's configuration) may have replaced
    # the build the torch step installed: what counts is what the environment holds at the end.
    wrong = check_installed(planned, installed_versions(python, env, list(planned)))
    return f"{wrong}; undoing the install" if wrong else None


def _undo(
    create: bool,
    env_dir: Path | None,
    python: Path,
    before: dict[str, str] | None,
    env: dict[str, str],
    args: argparse.Namespace,
) -> None:
    if create and env_dir is not None:
        shutil.rmtree(env_dir, ignore_errors=True)
        _say(f"bootstrap: removed the partly built {env_dir}; nothing else was changed")
    elif before is not None and _restore(python, before, env, args):
        _say("bootstrap: the environment is back as it was")
    elif before is not None:
        frozen = _write_freeze(before)
        _say(
            "bootstrap: could not fully restore the environment; its packages before this run "
            f"are in {frozen} (pip install -r {frozen})"
        )


def _write_freeze(before: dict[str, str]) -> str:
    fd, path = tempfile.mkstemp(prefix="gpucheck-freeze-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(before.values()) + "\n")
    return path

"""`gpucheck compat verify`: the compatibility table against the PyTorch wheel index and PyPI.

Opt-in and online. It reads the index's simple pages (`<index>/<variant>/torch/`, PEP 503
HTML, or PEP 691 JSON when the server offers it), PyPI's JSON API for torch and
torchvision, and the core metadata (PEP 658) of one PyPI wheel per platform, and reports
every disagreement with the table: variants of each release, their platforms and Python
tags (free-threaded `cp313t` too), the build PyPI's plain wheel is on each platform, the
torchvision pairing, and releases PyPI has that the table lacks.

Parsing (gpucheck/compat/wheelindex.py) and comparison (`compare`) are pure functions over
page text; only `fetch_all` touches the network, every request bounded by what is left of
`--timeout`.

Exit codes: 0 no disagreement, 1 at least one, 2 the index or PyPI cannot be reached (one
line), or a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from gpucheck.compat import PLATFORMS, CompatError, CompatTable, load_table
from gpucheck.recommend.evaluate import PLATFORM_WORDS

if TYPE_CHECKING:
    from gpucheck.compat.wheelindex import Wheel

DEFAULT_PYPI = "https://pypi.org"
EXIT_OK, EXIT_DISAGREE, EXIT_UNREACHABLE = 0, 1, 2
ARCH_NOTE = (
    "GPU arch lists are not on the index: install the wheel and run "
    '`python -c "import torch; print(torch.cuda.get_arch_list())"` (recent torch reads its '
    "compile-time list without a GPU; older releases answer [] unless a GPU is visible), "
    "then write the list into `arch` as TORCH_CUDA_ARCH_LIST"
)


# --- pure: what was observed, and the comparison ------------------------------------------


@dataclass
class Observed:
    index: dict[str, list[Wheel] | None] = field(default_factory=dict)  # None: no such page
    pypi: dict[str, list[Wheel]] | None = None  # torch version -> its PyPI wheels
    pypi_default: dict[str, dict[str, str]] = field(default_factory=dict)  # ver -> plat -> build
    torchvision_latest: str | None = None
    torchvision_pins: dict[str, str | None] = field(default_factory=dict)  # tv -> torch pin
    unread: list[str] = field(default_factory=list)  # "URL: why"


@dataclass(frozen=True)
class Disagreement:
    kind: str
    text: str
    release: str | None = None
    variant: str | None = None
    table: Any = None  # what the table says
    index: Any = None  # what the index or PyPI says

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k) for k in ("kind", "release", "variant", "table", "index", "text")
        }


def _words(platforms: Any) -> str:
    return ", ".join(PLATFORM_WORDS.get(p, p) for p in sorted(platforms))


def _pys(pythons: Any) -> str:
    return ", ".join(sorted(pythons, key=lambda p: (int(p.rstrip("t")[2:]), p.endswith("t"))))


def free_threaded_of(table: CompatTable, version: str) -> tuple[set[str], set[str]]:
    """(listed, unconfirmed) free-threaded Pythons of a release: entries like '3.14t' in
    `python`/`python_unconfirmed`, or a release key `python_free_threaded`."""
    releases = table.raw.get("torch", {}).get("releases", [])
    raw = next((r for r in releases if isinstance(r, dict) and r.get("version") == version), {})
    listed = {p for p in raw.get("python", ()) if str(p).endswith("t")}
    listed |= {str(v).rstrip("t") + "t" for v in raw.get("python_free_threaded") or ()}
    return listed, {p for p in raw.get("python_unconfirmed", ()) if str(p).endswith("t")}


def _release_wheels(obs: Observed, variant: str, version: str) -> list[Wheel] | None:
    page = obs.index.get(variant)
    if page is None:
        return None
    return [w for w in page if w.version == version and w.local in (variant, None)]


def compare(table: CompatTable, obs: Observed) -> list[Disagreement]:
    """Every disagreement between the table and what the index and PyPI list (pure)."""
    out: list[Disagreement] = []
    for release in table.releases:
        out += _compare_variants(table, obs, release)
        out += _compare_pypi(obs, release)
    return out + _compare_releases(table, obs)


PY_TEXT = {
    "python-missing": "the index has {py} wheels ({where}); the table does not list {py}",
    "python-unconfirmed": "the index has {py} wheels ({where}); the table marks {py} unconfirmed",
    "python-absent": "the table lists Python {py}; the index has no wheel for it ({where})",
    "python-unconfirmed-absent": "the table marks Python {py} unconfirmed; the index has no "
    "wheel for it ({where})",
    "free-threaded-missing": "the index has free-threaded {py} wheels ({where}); "
    "the table does not list {py}",
    "free-threaded-absent": "the table lists free-threaded {py}; the index has no wheel "
    "for it ({where})",
}


def _compare_variants(table: CompatTable, obs: Observed, release: Any) -> list[Disagreement]:
    r, out = release.version, []
    py_listed = {p for p in release.python if not p.endswith("t")}
    py_unconf = {p for p in release.python_unconfirmed if not p.endswith("t")}
    ft_listed, ft_unconf = free_threaded_of(table, r)
    by_python: dict[tuple[str, str], set[str]] = defaultdict(set)  # (kind, py) -> where

    def add(kind: str, text: str, variant: str | None, said: Any, seen: Any) -> None:
        out.append(Disagreement(kind, f"torch {r}{'+' + variant if variant else ''}: {text}",
                                r, variant, said, seen))  # fmt: skip

    for variant in release.variants:
        v = variant.name
        if v not in obs.index:
            continue  # its page could not be read: listed in obs.unread
        wheels = _release_wheels(obs, v, r)
        if not wheels:
            where = "has no such page" if wheels is None else f"has no {r} wheels"
            kind = "variant-absent" if variant.status == "confirmed" else "unconfirmed-absent"
            add(kind, f"the table lists it ({variant.status}); the {v} index {where}", v,
                variant.status, None)  # fmt: skip
            continue
        plats = set().union(*(w.platforms for w in wheels))
        if variant.status != "confirmed":
            add("unconfirmed-present", f"the index has it ({_words(plats)}); the table marks "
                "it unconfirmed", v, variant.status, sorted(plats))  # fmt: skip
        said = sorted(variant.platforms)
        for p in sorted(plats - set(variant.platforms)):
            if p in variant.unconfirmed_platforms:
                add("platform-unconfirmed", f"the index has {PLATFORM_WORDS[p]} wheels; the "
                    "table marks that platform unconfirmed", v, said, sorted(plats))  # fmt: skip
            else:
                add("platform-missing", f"the index has {PLATFORM_WORDS[p]} wheels; the table "
                    "does not list that platform", v, said, sorted(plats))  # fmt: skip
        for p in sorted(set(variant.platforms) - plats):
            add("platform-absent", f"the table lists {PLATFORM_WORDS.get(p, p)}; the index "
                "has no wheel for it", v, said, sorted(plats))  # fmt: skip
        for p in sorted(plats & (set(variant.platforms) | set(variant.unconfirmed_platforms))):
            got = set().union(*(w.pythons for w in wheels if p in w.platforms))
            gil = {x for x in got if not x.endswith("t")}
            ft = got - gil
            where = f"{v} {PLATFORM_WORDS[p]}"
            for kind, pys in (
                ("python-missing", gil - py_listed - py_unconf),
                ("python-unconfirmed", gil & py_unconf),
                ("python-unconfirmed-absent", py_unconf - gil),
                ("python-absent", py_listed - gil),
                ("free-threaded-missing", ft - ft_listed - ft_unconf),
                ("free-threaded-absent", ft_listed - ft),
            ):
                for py in pys:
                    by_python[(kind, py)].add(where)
    everywhere = {f"{v.name} {PLATFORM_WORDS[p]}" for v in release.variants for p in PLATFORMS
                  if any(p in w.platforms for w in _release_wheels(obs, v.name, r) or ())}  # fmt: skip
    for (kind, py), where in sorted(by_python.items()):
        places = "every build" if where == everywhere else "; ".join(sorted(where))
        text = PY_TEXT[kind].format(py=py, where=places)
        add(kind, text, None, py, sorted(where))
    known = {v.name for v in release.variants}
    for v in sorted(set(obs.index) - known):  # index pages the table does not list for r
        wheels = _release_wheels(obs, v, r) or []
        if any(w.local == v for w in wheels):
            plats = set().union(*(w.platforms for w in wheels))
            pys = set().union(*(w.pythons for w in wheels))
            add("variant-missing", f"the index has it ({_words(plats)}; Python {_pys(pys)}); "
                "the table does not list it", v, None, sorted(plats))  # fmt: skip
    return out


def _compare_pypi(obs: Observed, release: Any) -> list[Disagreement]:
    r, out = release.version, []
    if obs.pypi is None or r not in obs.pypi:
        return out  # a release PyPI lacks is reported by _compare_releases
    seen = obs.pypi_default.get(r, {})
    for p in PLATFORMS:
        has = any(p in w.platforms for w in obs.pypi[r])
        if has and p not in seen:
            continue  # its metadata could not be read: listed in obs.unread
        said, got = release.pypi_default.get(p), seen.get(p) if has else None
        if said != got:
            now = f"PyPI's wheel is the {got} build" if got else "PyPI has no wheel"
            text = f"torch {r} on {PLATFORM_WORDS[p]}: {now}; the table says {said or 'none'}"
            out.append(Disagreement("pypi-default", text, r, None, said, got))
    tv = release.torchvision
    if tv and tv in obs.torchvision_pins and obs.torchvision_pins[tv] != r:
        pin = obs.torchvision_pins[tv]
        now = f"requires torch {pin}" if pin else "is not on PyPI"
        text = f"torch {r}: the table pairs it with torchvision {tv}, which {now}"
        out.append(Disagreement("torchvision", text, r, None, tv, pin))
    return out


def _compare_releases(table: CompatTable, obs: Observed) -> list[Disagreement]:
    if obs.pypi is None:
        return []
    out = []
    by_minor = {rel.minor: rel for rel in table.releases}
    oldest = min(Version(rel.minor) for rel in table.releases)
    newest: dict[str, Version] = {}  # minor -> newest final release on PyPI
    for text in obs.pypi:
        v = Version(text)
        minor = f"{v.major}.{v.minor}"
        if Version(minor) >= oldest and (minor not in newest or v > newest[minor]):
            newest[minor] = v
    for minor, v in sorted(newest.items(), key=lambda kv: kv[1]):
        rel = by_minor.get(minor)
        if rel is None:
            text = f"torch {v} is on PyPI; the table has no {minor} release"
            out.append(Disagreement("release-missing", text, str(v), None, None, str(v)))
        elif v > Version(rel.version):
            text = f"torch {v} is on PyPI; the table's {minor} entry is {rel.version}"
            out.append(Disagreement("release-newer", text, rel.version, None, rel.version, str(v)))
    for rel in table.releases:
        if rel.version not in obs.pypi:
            text = f"torch {rel.version}: the table lists it; PyPI has no such release"
            out.append(Disagreement("release-absent", text, rel.version, None, rel.version, None))
    latest = obs.torchvision_latest
    pin = obs.torchvision_pins.get(latest or "")
    rel = next((x for x in table.releases if x.version == pin), None)
    if latest and rel is not None and rel.torchvision != latest:
        text = (f"torchvision {latest} (requires torch {pin}) is on PyPI; the table pairs "
                f"torch {pin} with {rel.torchvision or 'no torchvision'}")  # fmt: skip
        out.append(Disagreement("torchvision", text, pin, None, rel.torchvision, latest))
    return out


MISSING = object()  # a page that could not be read (listed in Observed.unread)


def candidate_variants(table: CompatTable) -> tuple[str, ...]:
    """CUDA indexes newer than any the table knows, to look for (a missing page is normal)."""
    cudas = sorted({v.cuda for r in table.releases for v in r.variants if v.cuda})
    if not cudas:
        return ()
    major, minor = cudas[-1]
    names = [f"cu{major}{m}" for m in range(minor + 1, min(minor + 5, 10))] + [f"cu{major + 1}0"]
    known = {v.name for r in table.releases for v in r.variants}
    return tuple(n for n in names if n not in known)


def fetch_all(
    table: CompatTable, index_template: str, pypi_url: str, timeout: float
) -> tuple[Observed, tuple[str, ...]]:
    """Read every page the comparison needs; raise Unreachable when a host cannot be reached."""
    # here, not at the top: the parser of every command imports this module
    from gpucheck.compat.wheelindex import (
        ACCEPT_SIMPLE,
        Page,
        Unreachable,
        fetch,
        parse_metadata,
        parse_pypi_project,
        parse_pypi_release,
        parse_simple_page,
        pick_wheel,
        run_jobs,
        torch_pin,
        variant_of_requirements,
        why,
    )

    deadline = time.monotonic() + timeout
    pypi = pypi_url.rstrip("/")
    variants = sorted({v.name for r in table.releases for v in r.variants})
    candidates = candidate_variants(table)

    def page_url(variant: str) -> str:
        return index_template.replace("{variant}", variant).rstrip("/") + "/torch/"

    def get(url: str, accept: str = "application/json, */*;q=0.1") -> Any:
        return lambda left: fetch(url, left, accept)

    obs = Observed()
    # 1. one request to each host: if either cannot be reached, say so and stop
    first = {
        "index": get(page_url(variants[0]), ACCEPT_SIMPLE),
        "pypi": get(f"{pypi}/pypi/torch/json"),
    }
    res = run_jobs(first, deadline)
    for key, host in (("index", page_url(variants[0])), ("pypi", f"{pypi}/pypi/torch/json")):
        if isinstance(res[key], OSError):  # URLError, refused, no route, DNS, timeout
            raise Unreachable(f"cannot reach {host}: {why(res[key])}")
    # 2. the other index pages, torchvision's pages
    jobs = {f"index:{v}": get(page_url(v), ACCEPT_SIMPLE) for v in (*variants[1:], *candidates)}
    jobs["tv"] = get(f"{pypi}/pypi/torchvision/json")
    tvs = sorted({r.torchvision for r in table.releases if r.torchvision})
    jobs.update({f"tv:{tv}": get(f"{pypi}/pypi/torchvision/{tv}/json") for tv in tvs})
    res.update(run_jobs(jobs, deadline))
    res[f"index:{variants[0]}"] = res.pop("index")

    def page(key: str, url: str, parse: Any) -> Any:
        """parse(page) for a 200; None for a 404 (no such page); MISSING when unreadable."""
        r = res.get(key)
        if isinstance(r, BaseException):
            obs.unread.append(f"{url}: {why(r)}")
            return MISSING
        if r.status == 404:
            return None
        if r.status != 200:
            obs.unread.append(f"{url}: HTTP {r.status}")
            return MISSING
        try:
            return parse(r)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not such a page
            obs.unread.append(f"{url}: not the page expected ({type(exc).__name__})")
            return MISSING

    def wheels(r: Page) -> list[Wheel]:
        found = parse_simple_page(r.text, r.content_type, r.url)
        if not found:  # a real project page lists wheels; a portal or error page does not
            raise ValueError("no wheels listed")
        return found

    for v in (*variants, *candidates):
        got = page(f"index:{v}", page_url(v), wheels)
        if got is not MISSING and (got is not None or v in variants):
            obs.index[v] = got
    got = page("pypi", f"{pypi}/pypi/torch/json", lambda r: parse_pypi_project(r.text, r.url))
    if got is None:
        obs.unread.append(f"{pypi}/pypi/torch/json: HTTP 404")
    elif got is not MISSING:
        obs.pypi = got[0]
    for tv in tvs:
        url = f"{pypi}/pypi/torchvision/{tv}/json"
        got = page(f"tv:{tv}", url, lambda r: torch_pin(parse_pypi_release(r.text)))
        if got is not MISSING:
            obs.torchvision_pins[tv] = got
    got = page("tv", f"{pypi}/pypi/torchvision/json", lambda r: parse_pypi_project(r.text)[1])
    if got not in (None, MISSING):
        obs.torchvision_latest = got or None
    # 3. the metadata of one PyPI wheel per platform; the newest torchvision's pin
    jobs, meta = {}, {}
    for rel in table.releases:
        for plat in PLATFORMS:
            wheel = pick_wheel((obs.pypi or {}).get(rel.version, []), plat)
            if wheel is not None:
                key = f"meta:{rel.version}:{plat}"
                jobs[key] = get(wheel.url + ".metadata", "*/*")
                meta[key] = (rel.version, plat, wheel)
    latest = obs.torchvision_latest
    if latest and latest not in obs.torchvision_pins:
        jobs["tv-latest"] = get(f"{pypi}/pypi/torchvision/{latest}/json")
    res.update(run_jobs(jobs, deadline))
    for key, (version, plat, wheel) in meta.items():
        py = sorted(wheel.pythons)[0] if wheel.pythons else "3.12"
        got = page(key, wheel.url + ".metadata", lambda r: parse_metadata(r.text))
        if got is None:
            obs.unread.append(f"{wheel.url}.metadata: HTTP 404")
        elif got is not MISSING:
            obs.pypi_default.setdefault(version, {})[plat] = variant_of_requirements(got, plat, py)
    if "tv-latest" in jobs:
        url = f"{pypi}/pypi/torchvision/{latest}/json"
        got = page("tv-latest", url, lambda r: torch_pin(parse_pypi_release(r.text)))
        if got not in (None, MISSING):
            obs.torchvision_pins[latest] = got
    return obs, candidates


# --- the command ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the result as JSON to FILE (or stdout when FILE is omitted)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="limit for the whole check in seconds (default 60)",
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        help="the PyTorch wheel index, holding <variant>/torch/ pages "
        "(default: the table's, https://download.pytorch.org/whl)",
    )
    parser.add_argument(
        "--pypi-url", metavar="URL", help=f"PyPI, for its JSON API (default {DEFAULT_PYPI})"
    )
    parser.add_argument(
        "--compat",
        metavar="FILE",
        help="check this compatibility table instead of the built-in one",
    )


def _url(flag: str, value: str) -> str:
    from gpucheck.errors import UsageError

    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{flag}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def result_dict(
    table: CompatTable,
    index: str,
    pypi: str,
    found: list[Disagreement],
    obs: Observed,
    candidates: tuple[str, ...],
) -> dict[str, Any]:
    return {
        "ok": not found and not obs.unread,
        "table": table.origin,
        "index_url": index,
        "pypi_url": pypi,
        "disagreements": [d.to_dict() for d in found],
        "unread": list(obs.unread),
        "looked_for": list(candidates),
        "notes": [ARCH_NOTE],
    }


def render_text(result: dict[str, Any]) -> str:
    found = result["disagreements"]
    lines = [
        f"compat verify: the {result['table']} table against {result['index_url']} and "
        f"{result['pypi_url']}"
    ]
    by_release: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in found:
        by_release[d["release"] or "-"].append(d)
    for release, items in by_release.items():
        lines.append(f"torch {release}:" if release != "-" else "releases:")
        lines += [f"  - {d['text']}  [{d['kind']}]" for d in items]
    for u in result["unread"]:
        lines.append(f"  ? could not read {u}")
    n = len(found)
    if n:
        lines.append(f"{n} disagreement{'s' if n != 1 else ''} with the table.")
    elif result["unread"]:
        lines.append("No disagreement in what could be read; the check is incomplete.")
    else:
        lines.append("No disagreement: the table matches the index and PyPI.")
    lines.append(f"Note: {ARCH_NOTE}.")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from gpucheck.errors import UsageError
    from gpucheck.io import read_text, write_atomic

    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout: expected seconds between 0 and 3600, got {args.timeout}")
    try:
        if args.compat:
            table = load_table(read_text(args.compat, "compatibility table"), source=args.compat)
        else:
            table = load_table()
    except CompatError as exc:
        raise UsageError(f"compatibility table {args.compat}: {exc}") from None
    template = table.index_url
    if args.index_url:
        template = _url("--index-url", args.index_url) + "/{variant}"
    pypi = _url("--pypi-url", args.pypi_url or DEFAULT_PYPI)
    index = template.replace("/{variant}", "")
    if args.json and args.json != "-":  # fail on an unwritable path before the network work,
        folder = os.path.dirname(os.path.abspath(args.json))  # and leave an old file as it is
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"cannot write {args.json}: folder {folder} is missing or read-only")
    from gpucheck.compat.wheelindex import Unreachable

    try:
        obs, candidates = fetch_all(table, template, pypi, args.timeout)
    except Unreachable as exc:
        print(
            f"gpucheck: compat verify: {exc} (offline? try again with a network)", file=sys.stderr
        )
        return EXIT_UNREACHABLE
    found = compare(table, obs)
    result = result_dict(table, index, pypi, found, obs, candidates)
    if args.json:
        text = json.dumps(result, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            write_atomic(args.json, text)
    if args.json != "-":
        sys.stdout.write(render_text(result))
    if found:
        return EXIT_DISAGREE
    return EXIT_UNREACHABLE if obs.unread else EXIT_OK

"""Wheel indexes as data: PEP 503/691 simple pages, PyPI's JSON API, wheel core metadata.

Pure parsers over page text (`parse_simple_page`, `parse_pypi_project`, `parse_metadata`,
`variant_of_requirements`) and a small fetch layer (`fetch`, `run_jobs`: urllib with a
timeout, on daemon threads under one deadline). Used by `gpucheck compat verify`.
"""

from __future__ import annotations

import email.parser
import html.parser
import json
import queue
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

ACCEPT_SIMPLE = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)
MAX_PAGE_BYTES = 32 * 1024 * 1024
WORKERS = 8
# PEP 508 environment of each platform, to read a wheel's Requires-Dist markers
ENVIRONMENTS = {
    "linux-x86_64": ("linux", "Linux", "x86_64", "posix"),
    "linux-aarch64": ("linux", "Linux", "aarch64", "posix"),
    "windows-x86_64": ("win32", "Windows", "AMD64", "nt"),
    "macos-arm64": ("darwin", "Darwin", "arm64", "posix"),
    "macos-x86_64": ("darwin", "Darwin", "x86_64", "posix"),
}


class Unreachable(Exception):
    """The index or PyPI cannot be reached at all (no route, DNS, refused, timeout)."""


# --- pure: wheel file names and pages ----------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    filename: str
    version: str  # public version, "2.14.1"
    local: str | None  # "cu126", "cpu", "rocm7.2" or None (PyPI, macOS on the cpu index)
    platforms: frozenset[str]  # table platforms, e.g. {"linux-x86_64"}
    pythons: frozenset[str]  # "3.12", "3.13t"
    url: str | None = None


def platform_of_tag(tag: str) -> str | None:
    """'manylinux_2_28_x86_64' -> 'linux-x86_64'; None for a platform the table does not model."""
    if tag == "win_amd64":
        return "windows-x86_64"
    m = re.fullmatch(r"(?:many|musl)?linux(?:\d+|_\d+_\d+)?_(x86_64|aarch64)", tag)
    if m:
        return f"linux-{m.group(1)}"
    m = re.fullmatch(r"macosx_\d+_\d+_(arm64|x86_64|universal2)", tag)
    if m:
        return "macos-x86_64" if m.group(1) == "x86_64" else "macos-arm64"
    return None


def python_of_tag(interpreter: str, abi: str) -> str | None:
    """('cp313', 'cp313t') -> '3.13t'; ('cp312', 'none') -> '3.12'; None for py3/abi3."""
    m = re.fullmatch(r"cp3(\d+)", interpreter)
    if not m:
        return None
    return f"3.{m.group(1)}" + ("t" if abi.endswith("t") else "")


def parse_wheel(filename: str, url: str | None = None) -> Wheel | None:
    """A wheel of the index or PyPI; None for anything else (sdists, bad names)."""
    if not filename.endswith(".whl"):
        return None
    try:
        _name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    plats = {platform_of_tag(t.platform) for t in tags}
    pys = {python_of_tag(t.interpreter, t.abi) for t in tags}
    return Wheel(
        filename,
        version.public,
        version.local,
        frozenset(p for p in plats if p),
        frozenset(p for p in pys if p),
        url,
    )


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (text, href)
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def _filename_of(href: str) -> str:
    path = urllib.parse.urlsplit(href).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])


def parse_simple_page(text: str, content_type: str = "", base_url: str = "") -> list[Wheel]:
    """The wheels listed on a simple-API project page: PEP 691 JSON or PEP 503 HTML."""
    if "json" in content_type or text.lstrip().startswith("{"):
        data = json.loads(text)
        files = [(f.get("filename", ""), f.get("url", "")) for f in data.get("files", [])]
    else:
        parser = _Anchors()
        parser.feed(text)
        files = [(label or _filename_of(href), href) for label, href in parser.links]
    out = []
    for name, href in files:
        wheel = parse_wheel(name or _filename_of(href), urllib.parse.urljoin(base_url, href))
        if wheel is not None:
            out.append(wheel)
    return out


def parse_pypi_project(text: str, base_url: str = "") -> tuple[dict[str, list[Wheel]], str]:
    """PyPI's /pypi/<name>/json -> ({final version: its wheels}, latest version).

    Pre-releases and versions whose every file is yanked are left out.
    """
    data = json.loads(text)
    out: dict[str, list[Wheel]] = {}
    for version, files in (data.get("releases") or {}).items():
        try:
            if Version(version).is_prerelease:
                continue
        except InvalidVersion:
            continue
        if files and all(f.get("yanked") for f in files):
            continue
        wheels = [
            parse_wheel(f.get("filename", ""), urllib.parse.urljoin(base_url, f.get("url", "")))
            for f in files
            if not f.get("yanked")
        ]
        out[version] = [w for w in wheels if w is not None]
    return out, str((data.get("info") or {}).get("version") or "")


def parse_pypi_release(text: str) -> list[str]:
    """PyPI's /pypi/<name>/<version>/json -> its Requires-Dist lines."""
    return list((json.loads(text).get("info") or {}).get("requires_dist") or [])


def parse_metadata(text: str) -> list[str]:
    """A wheel's core metadata (PEP 658 `.metadata` file) -> its Requires-Dist lines."""
    return email.parser.Parser().parsestr(text, headersonly=True).get_all("Requires-Dist") or []


def torch_pin(requires_dist: list[str]) -> str | None:
    """'torch==2.14.1' among a torchvision's requirements -> '2.14.1'."""
    for line in requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "torch":
            for spec in req.specifier:
                if spec.operator in ("==", "==="):
                    return spec.version
    return None


_CUDA_PACKAGES = re.compile(
    r"(cuda-toolkit|nvidia-cuda-runtime(-cu\d+)?|nvidia-cuda-nvrtc(-cu\d+)?)"
)


def variant_of_requirements(requires_dist: list[str], platform: str, python: str) -> str:
    """The build a PyPI wheel is: 'cu130' when it pulls CUDA 13.0 runtime wheels, else 'cpu'."""
    sys_platform, system, machine, os_name = ENVIRONMENTS[platform]
    env = {
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": os_name,
        "python_version": python.rstrip("t"),
        "python_full_version": python.rstrip("t") + ".0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    for line in requires_dist:
        try:
            req = Requirement(line)
            applies = req.marker is None or req.marker.evaluate(env)
        except (InvalidRequirement, InvalidMarker):
            continue
        if not applies or not _CUDA_PACKAGES.fullmatch(canonicalize_name(req.name)):
            continue
        for spec in req.specifier:
            parts = spec.version.split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return f"cu{parts[0]}{parts[1]}"
    return "cpu"


def pick_wheel(wheels: list[Wheel], platform: str) -> Wheel | None:
    """The one wheel per platform whose metadata is read: the first by name, GIL builds first."""
    mine = [w for w in wheels if platform in w.platforms and w.url]
    mine.sort(key=lambda w: (any(p.endswith("t") for p in w.pythons), w.filename))
    return mine[0] if mine else None


# --- the network: a small fetch layer ------------------------------------------------------


@dataclass(frozen=True)
class Page:
    url: str
    status: int
    content_type: str
    text: str


def fetch(url: str, timeout: float, accept: str = "application/json, */*;q=0.1") -> Page:
    """GET `url` within `timeout` seconds. An HTTP error status is a Page; no answer raises."""
    import urllib.error  # here: http.client and ssl are not needed by any other command
    import urllib.request

    request = urllib.request.Request(
        url, headers={"Accept": accept, "User-Agent": "gpucheck-compat-verify"}
    )
    try:
        with urllib.request.urlopen(request, timeout=max(0.05, timeout)) as resp:
            data = resp.read(MAX_PAGE_BYTES + 1)
            if len(data) > MAX_PAGE_BYTES:
                raise ValueError(f"larger than {MAX_PAGE_BYTES // 2**20} MiB")
            ctype = resp.headers.get("Content-Type", "")
            return Page(resp.geturl(), resp.status, ctype, data.decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return Page(url, exc.code, "", "")


def why(exc: BaseException) -> str:
    """One line for a failed request."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return "no answer in time"
    return " ".join(str(reason).split()) or type(reason).__name__


def run_jobs(jobs: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Run `job(seconds_left)` for each key on daemon threads, until done or the deadline.

    Daemon threads, because a name lookup ignores urllib's timeout: a hung one must not keep
    the process from answering on time. Unfinished jobs come back as TimeoutError.
    """
    if not jobs:
        return {}
    todo: queue.Queue[str] = queue.Queue()
    for key in jobs:
        todo.put(key)
    results: dict[str, Any] = {}
    lock, done = threading.Lock(), threading.Event()

    def worker() -> None:
        while True:
            try:
                key = todo.get_nowait()
            except queue.Empty:
                return
            left = deadline - time.monotonic()
            try:
                res = jobs[key](left) if left > 0 else TimeoutError("timed out")
            except Exception as exc:  # one failed page is reported, not fatal
                res = exc
            with lock:
                results[key] = res
                if len(results) == len(jobs):
                    done.set()

    for _ in range(min(WORKERS, len(jobs))):
        threading.Thread(target=worker, daemon=True).start()
    done.wait(max(0.0, deadline - time.monotonic()))
    with lock:
        out = dict(results)
    for key in jobs:
        out.setdefault(key, TimeoutError("timed out"))
    return out

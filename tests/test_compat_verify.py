"""`gpucheck compat verify`: recorded index pages, a local index server, and no network.

The recorded pages (tests/fixtures/index/, written by make_fixtures.py) are served by
http.server on 127.0.0.1 only. The table under test is built from the built-in one, its
compared facts set to what the pages say, so the tests do not move when the table does;
each disagreement class is then made by changing one fact.
"""

from __future__ import annotations

import copy
import functools
import http.server
import json
import socket
import threading
import time

import pytest
from conftest import FIXTURES

from gpucheck.cli import main
from gpucheck.compat import CompatError, _read_builtin, load_table
from gpucheck.compat import verify as cv
from gpucheck.compat import wheelindex as wi

INDEX = FIXTURES / "index"
LX, LA, WIN, MAC = "linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64"
PYS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
# the state of the recorded pages, as table facts: variant -> platforms
WORLD = {
    "2.14.1": {
        "cu134": [LX, LA],
        "cu132": [LX, WIN, LA],
        "cu130": [LX, WIN, LA],
        "cu126": [LX, WIN, LA],
        "cpu": [LX, WIN, MAC, LA],
        "xpu": [LX, WIN],
        "rocm7.14": [LX],
        "rocm7.2": [LX],
    },
    "2.13.0": {
        "cu132": [LX, WIN, LA],
        "cu130": [LX, WIN, LA],
        "cu126": [LX, WIN, LA],
        "cpu": [LX, WIN, MAC, LA],
        "xpu": [LX, WIN],
        "rocm7.2": [LX],
        "rocm7.1": [LX],
    },
}
TORCHVISION = {"2.14.1": "0.29.1", "2.13.0": "0.28.0"}


def agreeing_parts() -> dict:
    """The built-in table cut to 2.14.1 and 2.13.0, with every compared fact as recorded."""
    torch = _read_builtin("torch")
    drivers = _read_builtin("drivers")
    by_version = {r["version"]: r for r in torch["releases"]}
    releases = []
    for version, variants in WORLD.items():
        rel = copy.deepcopy(by_version[version])
        old = {v["name"]: v for v in rel["variants"]}
        template = old.get("cu132") or next(v for v in rel["variants"] if "arch" in v)
        rel["variants"] = []
        for name, platforms in variants.items():
            v = copy.deepcopy(old.get(name) or dict(template, name=name))
            v.update(status="confirmed", platforms=list(platforms), unconfirmed_platforms=[])
            if "arch" in v:  # a CUDA variant: arch lists are not compared, keep them valid
                v["arch"] = {p: v["arch"].get(p) for p in (LX, LA) if p in platforms or p == LX}
            rel["variants"].append(v)
        rel["python"] = PYS + ["3.14t"]
        rel["python_unconfirmed"] = []
        rel.pop("python_free_threaded", None)
        rel["pypi_default"] = {LX: "cu130", LA: "cu130", WIN: "cpu", MAC: "cpu"}
        rel["pypi_default"]["macos-x86_64"] = None
        rel["torchvision"] = TORCHVISION[version]
        releases.append(rel)
    torch["releases"] = releases
    gpus = _read_builtin("gpus")
    for rel in releases:
        for v in rel["variants"]:
            if v["name"].startswith("rocm"):
                gpus["rocm_index_archs"]["archs"].setdefault(v["name"], None)
    rows = drivers["toolkits"]["rows"]
    if not any(r[0] == "13.4" for r in rows):  # cu134 needs a toolkit row; no driver facts here
        rows.insert(0, ["13.4", "GA", None, None])
    return {"torch": torch, "drivers": drivers, "gpus": gpus}


def loadable(parts: dict) -> dict:
    """`parts`, or, for a loader that does not read '3.14t' in `python`, the same with the
    free-threaded Pythons under the release key verify also reads."""
    try:
        load_table(json.dumps(parts), source="test table")
        return parts
    except CompatError as exc:
        if "t'" not in str(exc):
            raise
    parts = copy.deepcopy(parts)
    for rel in parts["torch"]["releases"]:
        rel["python_free_threaded"] = [p for p in rel["python"] if p.endswith("t")]
        rel["python"] = [p for p in rel["python"] if not p.endswith("t")]
    return parts


def table_of(parts: dict):
    return load_table(json.dumps(loadable(parts)), source="test table")


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(INDEX))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


class _Pep691Handler(_QuietHandler):
    """Serves the cu126 page as PEP 691 JSON to a client that asks for it; xpu fails (500);
    rocm7.1 is a page without wheels (a portal, an error page)."""

    def do_GET(self):
        if self.path == "/whl/cu126/torch/" and PEP691 in self.headers.get("Accept", ""):
            body = (INDEX / "pep691" / "cu126-torch.json").read_bytes()
            return self._reply(200, PEP691, body)
        if self.path == "/whl/xpu/torch/":
            return self._reply(500, "text/plain", b"upstream error")
        if self.path == "/whl/rocm7.1/torch/":
            return self._reply(200, "text/html", b"<html><body>Sign in</body></html>")
        return super().do_GET()

    def _reply(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


PEP691 = "application/vnd.pypi.simple.v1+json"


def _serve(handler_class):
    handler = functools.partial(handler_class, directory=str(INDEX))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def observed(server):
    table = table_of(agreeing_parts())
    obs, _ = cv.fetch_all(table, f"{server}/whl/{{variant}}", server, 20)
    return obs


def kinds(found):
    return sorted({(d.kind, d.release, d.variant) for d in found})


# --- pure parsing --------------------------------------------------------------------------


def test_wheel_names_as_the_index_lists_them():
    w = wi.parse_wheel("torch-2.14.1+cu126-cp313-cp313t-manylinux_2_28_x86_64.whl")
    assert (w.version, w.local, w.platforms, w.pythons) == ("2.14.1", "cu126", {LX}, {"3.13t"})
    w = wi.parse_wheel("torch-2.14.1-cp312-none-macosx_11_0_arm64.whl")
    assert (w.local, w.platforms, w.pythons) == (None, {MAC}, {"3.12"})
    w = wi.parse_wheel("torch-2.4.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert w.platforms == {LA}
    assert wi.parse_wheel("torch-2.5.1+cpu.cxx11.abi-cp312-cp312-linux_x86_64.whl").local == (
        "cpu.cxx11.abi"
    )
    assert wi.parse_wheel("torch-2.14.1-cp312-cp312-win_arm64.whl").platforms == frozenset()
    assert wi.parse_wheel("torch-2.14.1.tar.gz") is None
    assert wi.parse_wheel("not a wheel.whl") is None


def test_pep503_html_and_pep691_json_pages_list_the_same_wheels():
    html = (INDEX / "whl" / "cu126" / "torch" / "index.html").read_text()
    js = (INDEX / "pep691" / "cu126-torch.json").read_text()
    base = "https://download.pytorch.org/whl/cu126/torch/"
    a = wi.parse_simple_page(html, "text/html", base)
    b = wi.parse_simple_page(js, "application/vnd.pypi.simple.v1+json", base)
    assert len(a) == 3 * 3 * 6 and {w.filename for w in a} == {w.filename for w in b}
    assert a[0].url.startswith("https://download.pytorch.org/whl/cu126/torch-")
    assert "%2B" in a[0].url and "+" in a[0].filename


def test_pypi_project_skips_prereleases_and_yanked():
    text = json.dumps(
        {
            "info": {"version": "2.14.1"},
            "releases": {
                "2.14.1": [{"filename": "torch-2.14.1-cp312-cp312-win_amd64.whl", "url": "/x"}],
                "2.15.0rc1": [{"filename": "torch-2.15.0rc1-cp312-cp312-win_amd64.whl"}],
                "2.13.9": [{"filename": "torch-2.13.9-cp312-cp312-win_amd64.whl", "yanked": True}],
            },
        }
    )
    versions, latest = wi.parse_pypi_project(text, "https://pypi.org/pypi/torch/json")
    assert set(versions) == {"2.14.1"} and latest == "2.14.1"
    assert versions["2.14.1"][0].url == "https://pypi.org/x"


@pytest.mark.parametrize(
    "lines, platform, want",
    [
        (['cuda-toolkit[cudart]==13.0.2; platform_system == "Linux"'], LX, "cu130"),
        (['cuda-toolkit[cudart]==13.0.2; platform_system == "Linux"'], WIN, "cpu"),
        (['nvidia-cuda-runtime==13.2.86; platform_system == "Linux"'], LA, "cu132"),
        (
            [
                'nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux" and '
                'platform_machine == "x86_64"'
            ],
            LA,
            "cpu",
        ),
        (
            [
                'nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux" and '
                'platform_machine == "x86_64"'
            ],
            LX,
            "cu124",
        ),
        (['nvidia-cuda-runtime-cu11==11.7.99; platform_system == "Linux"'], LX, "cu117"),
        (['nvidia-cudnn-cu13==9.24; extra == "cuda"', "filelock"], LX, "cpu"),
        (["not a requirement ;;;"], LX, "cpu"),
    ],
)
def test_the_build_of_a_pypi_wheel_from_its_requirements(lines, platform, want):
    assert wi.variant_of_requirements(lines, platform, "3.12") == want


def test_metadata_and_torchvision_pin():
    meta = next((INDEX / "packages").rglob("torch-2.13.0-cp310-cp310-manylinux_2_28_*.metadata"))
    reqs = wi.parse_metadata(meta.read_text())
    assert any(r.startswith("cuda-toolkit") for r in reqs)
    pin = wi.torch_pin(
        wi.parse_pypi_release((INDEX / "pypi" / "torchvision" / "0.28.0" / "json").read_text())
    )
    assert pin == "2.13.0"


# --- the comparison (pure, over what the local server gave) ---------------------------------


def test_a_table_that_agrees_has_no_disagreement(observed):
    assert observed.unread == []
    assert cv.compare(table_of(agreeing_parts()), observed) == []


def _release(parts, version):
    return next(r for r in parts["torch"]["releases"] if r["version"] == version)


def _variant(parts, version, name):
    return next(v for v in _release(parts, version)["variants"] if v["name"] == name)


def drop_variant(p):
    rel = _release(p, "2.14.1")
    rel["variants"] = [v for v in rel["variants"] if v["name"] != "cu134"]


def mark_unconfirmed(p):
    _variant(p, "2.14.1", "rocm7.2")["status"] = "unconfirmed"


def platform_unconfirmed(p):
    v = _variant(p, "2.13.0", "cpu")
    v["platforms"].remove(LA)
    v["unconfirmed_platforms"] = [LA]


def platform_missing(p):
    _variant(p, "2.13.0", "xpu")["platforms"].remove(WIN)


def platform_absent(p):
    _variant(p, "2.14.1", "rocm7.14")["platforms"].append(WIN)


def variant_absent(p):
    _variant(p, "2.13.0", "rocm7.1")["name"] = "rocm6.4"
    p["gpus"]["rocm_index_archs"]["archs"].setdefault("rocm6.4", None)


def python_absent(p):
    _release(p, "2.14.1")["python"].insert(0, "3.9")


def python_missing(p):
    _release(p, "2.13.0")["python"].remove("3.10")


def python_unconfirmed_absent(p):
    _release(p, "2.14.1")["python_unconfirmed"] = ["3.15"]


def free_threaded_missing(p):
    _release(p, "2.14.1")["python"].remove("3.14t")


def pypi_default(p):
    _release(p, "2.13.0")["pypi_default"][LA] = None


def torchvision_pair(p):
    _release(p, "2.13.0")["torchvision"] = "0.29.1"


def release_missing(p):
    p["torch"]["releases"] = [_release(p, "2.13.0")]


def release_newer(p):
    _release(p, "2.14.1")["version"] = "2.14.0"


def release_absent(p):
    _release(p, "2.13.0")["version"] = "2.13.5"


CASES = [
    (drop_variant, ("variant-missing", "2.14.1", "cu134")),
    (mark_unconfirmed, ("unconfirmed-present", "2.14.1", "rocm7.2")),
    (platform_unconfirmed, ("platform-unconfirmed", "2.13.0", "cpu")),
    (platform_missing, ("platform-missing", "2.13.0", "xpu")),
    (platform_absent, ("platform-absent", "2.14.1", "rocm7.14")),
    (variant_absent, ("variant-absent", "2.13.0", "rocm6.4")),
    (python_absent, ("python-absent", "2.14.1", None)),
    (python_missing, ("python-missing", "2.13.0", None)),
    (python_unconfirmed_absent, ("python-unconfirmed-absent", "2.14.1", None)),
    (free_threaded_missing, ("free-threaded-missing", "2.14.1", None)),
    (pypi_default, ("pypi-default", "2.13.0", None)),
    (torchvision_pair, ("torchvision", "2.13.0", None)),
    (release_missing, ("release-missing", "2.14.1", None)),
    (release_newer, ("release-newer", "2.14.0", None)),
    (release_absent, ("release-absent", "2.13.5", None)),
]


@pytest.mark.parametrize("change, expected", CASES, ids=[c[1][0] for c in CASES])
def test_each_kind_of_disagreement(observed, change, expected):
    parts = agreeing_parts()
    change(parts)
    table = table_of(parts)
    obs = copy.copy(observed)
    # a page the server was not asked for is one it does not have (as fetch_all finds: 404)
    obs.index = {v.name: None for r in table.releases for v in r.variants} | observed.index
    found = kinds(cv.compare(table, obs))
    assert expected in found
    # nothing else, but what follows from the change itself
    also = {
        "variant-absent": {"variant-missing"},  # rocm7.1 renamed: the index still has it
        "release-newer": {"variant-absent", "torchvision"},  # 2.14.0: no such wheels here
        "release-absent": {"variant-absent"},
    }.get(expected[0], set())
    assert {k for k, _r, _v in found if (k, _r, _v) != expected} <= also
    texts = [d.text for d in cv.compare(table, obs)]
    assert all(t.strip() and "\n" not in t for t in texts)


def test_free_threaded_is_compared_per_build(observed):
    parts = agreeing_parts()
    _release(parts, "2.13.0")["python"].append("3.13t")  # no cp313t wheel in 2.13.0
    [d] = cv.compare(table_of(parts), observed)
    assert (d.kind, d.table) == ("free-threaded-absent", "3.13t")
    assert "every build" in d.text


# --- the command, against the local server, and with no server -----------------------------


def write_table(tmp_path, parts):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(loadable(parts)))
    return str(path)


def verify(server, table, *extra):
    argv = ["compat", "verify", "--index-url", f"{server}/whl", "--pypi-url", server]
    return main([*argv, "--compat", table, "--timeout", "20", *extra])


def test_command_exit_0_when_the_table_agrees(server, tmp_path, capsys):
    rc = verify(server, write_table(tmp_path, agreeing_parts()))
    out = capsys.readouterr().out
    assert rc == 0
    assert "No disagreement" in out and "get_arch_list()" in out


def test_command_json_and_exit_1_on_disagreements(server, tmp_path, capsys):
    parts = agreeing_parts()
    for change in (drop_variant, pypi_default, free_threaded_missing):
        change(parts)
    rc = verify(server, write_table(tmp_path, parts), "--json")
    result = json.loads(capsys.readouterr().out)
    assert rc == 1 and result["ok"] is False and result["unread"] == []
    got = {(d["kind"], d["release"], d["variant"]) for d in result["disagreements"]}
    assert got == {
        ("variant-missing", "2.14.1", "cu134"),
        ("pypi-default", "2.13.0", None),
        ("free-threaded-missing", "2.14.1", None),
    }
    assert "cu134" in result["looked_for"]  # found by looking past the table's newest CUDA
    assert any("get_arch_list" in n for n in result["notes"])


def test_command_json_to_a_file_keeps_the_text(server, tmp_path, capsys):
    target = tmp_path / "verify.json"
    rc = verify(server, write_table(tmp_path, agreeing_parts()), "--json", str(target))
    assert rc == 0 and json.loads(target.read_text())["ok"] is True
    assert "No disagreement" in capsys.readouterr().out


def test_pep691_json_unreadable_and_wheel_less_pages(tmp_path, capsys):
    httpd = _serve(_Pep691Handler)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        obs, _ = cv.fetch_all(table_of(agreeing_parts()), f"{url}/whl/{{variant}}", url, 20)
        rc = verify(url, write_table(tmp_path, agreeing_parts()), "--json")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(obs.index["cu126"]) == 3 * 3 * 6
    assert "#sha256=" not in obs.index["cu126"][0].url  # from the JSON page: no hash fragment
    assert "#sha256=" in obs.index["cu130"][0].url  # from an HTML page
    assert "xpu" not in obs.index and "rocm7.1" not in obs.index
    assert sorted(u.split("/torch/")[0].rsplit("/", 1)[1] for u in obs.unread) == ["rocm7.1", "xpu"]
    assert cv.compare(table_of(agreeing_parts()), obs) == []
    result = json.loads(capsys.readouterr().out)
    assert rc == 2 and result["ok"] is False and len(result["unread"]) == 2


def test_json_to_a_missing_folder_is_a_usage_error_and_an_old_file_survives_offline(
    tmp_path, capsys
):
    url = f"http://127.0.0.1:{_closed_port()}"
    argv = ["compat", "verify", "--index-url", url, "--pypi-url", url, "--json"]
    assert main([*argv, str(tmp_path / "no" / "such.json")]) == 2
    old = tmp_path / "verify.json"
    old.write_text('{"ok": true}')
    assert main([*argv, str(old)]) == 2  # cannot reach: the last result is kept
    assert old.read_text() == '{"ok": true}'
    capsys.readouterr()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_is_one_line_and_exit_2(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    rc = main(["compat", "verify", "--index-url", f"{url}/whl", "--pypi-url", url])
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "cannot reach" in captured.err and "127.0.0.1" in captured.err
    assert elapsed < 10


def test_a_server_that_never_answers_is_offline_within_the_timeout(capsys):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are queued, never answered
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        start = time.monotonic()
        rc = main(["compat", "verify", "--timeout", "1.5", "--index-url", url, "--pypi-url", url])
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no answer in time" in err
    assert elapsed < 1.5 + 2.0  # the limit, plus start-up slack on a loaded machine


@pytest.mark.parametrize(
    "argv",
    [
        ["--index-url", "ftp://example.org/whl"],
        ["--pypi-url", "not a url"],
        ["--timeout", "0"],
        ["--timeout", "soon"],
    ],
)
def test_bad_flags_are_usage_errors(argv, capsys):
    rc = main(["compat", "verify", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_compat_without_an_action_is_a_usage_error(capsys):
    assert main(["compat"]) == 2
    assert "ACTION" in capsys.readouterr().err

"""The feed API under a security review's attacks, over real HTTP, on SQLite and PostgreSQL.

- subscriptions.yaml that cannot be loaded (nested too deep, an alias bomb, bytes that are not
  UTF-8, too large, not a file) stops every feed with 503 and the reason, /healthz still answers,
  and a valid file brings the feeds back; an edit that keeps size and mtime is still noticed.
- an unauthenticated 300 MB POST is refused with 413 at once, the server's memory stays flat and
  /healthz stays fast meanwhile (the server is `enteronce serve` in its own process, measured from
  /proc/<pid>/status);
- oversized or too many headers are refused (400/431), a records lookup of 200 long ids is not;
- integers are digits only, within the database's INTEGER (int4 on PostgreSQL): anything else 422;
- /docs and /redoc need nothing but the API itself (HTML, assets, and in a real browser).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from core.config import parse_yaml_bounded
from core.errors import ConfigError, EnteronceError
from feeds.api import MAX_SEQ, ApiLimits, BackgroundServer, ServiceHolder, create_app
from feeds.config import load_subscriptions
from feeds.tokens import issue_token
from test_feeds_api import N, STATIONS_YAML, SUBSCRIPTIONS, seed

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("ENTERONCE_TEST_CHROMIUM", "/usr/bin/chromium")
FEEDS = ("events", "snapshot", "records", "cursor", "ack")
INT4_MAX = 2**31 - 1


def _nested(depth: int) -> str:
    return "version: 1\nsubscribers: " + "[" * depth + "]" * depth + "\n"


def _alias_bomb(levels: int = 9) -> str:
    """The billion laughs: 9 aliases of 9 aliases of ... a few bytes, 9**9 nodes expanded."""
    lines = ["version: 1", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _nested_blocks(depth: int) -> str:
    return "version: 1\nmasking:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(depth)) + "  " * (depth + 1) + "x: 1\n"


BROKEN: dict[str, bytes] = {
    "nested flow 100000 deep": _nested(100_000).encode(),
    "nested blocks 200 deep": _nested_blocks(200).encode(),
    "alias bomb": _alias_bomb().encode(),
    "recursive alias": b"version: 1\nroles: &r {x: *r}\n",
    "not UTF-8 (GBK)": yaml.safe_dump(SUBSCRIPTIONS, allow_unicode=True).replace(
        "station_officer", "派出所民警").encode("gbk"),
    "YAML syntax": b"version: 1\nsubscribers: [unclosed\n",
    "not the contract": b"version: 1\nsubscribers: [{id: s0002}]\n",
    "too large": b"# " + b"x" * (17 * 1024 * 1024) + b"\n",
}


def _valid(subscribers: list[str] = ("s0001", "s0002")) -> bytes:
    doc = {**SUBSCRIPTIONS, "subscribers": [s for s in SUBSCRIPTIONS["subscribers"] if s["id"] in subscribers]}
    return yaml.safe_dump(doc, allow_unicode=True).encode()


def _call(http: httpx.Client, token: str, subscriber: str, endpoint: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"}
    if endpoint == "ack":
        return http.post(f"/v1/feeds/{subscriber}/ack", headers=auth, json={"seq": 1})
    params = [("entity_id", "P0001")] if endpoint == "records" else []
    return http.get(f"/v1/feeds/{subscriber}/{endpoint}", headers=auth, params=params)


def _eventually(check, timeout: float) -> float:
    """Seconds until check() is true; fails after `timeout`."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - t0


# -- subscriptions.yaml: any failure is 503 until a valid file is back -------------------------------
def test_unloadable_subscriptions_stop_every_feed_until_fixed(warehouse_url: str, tmp_path: Path) -> None:
    store = seed(warehouse_url, tmp_path)
    token = issue_token(store, "s0002").token
    path = tmp_path / "subscriptions.yaml"
    with BackgroundServer(create_app(warehouse_url, tmp_path)) as base, httpx.Client(base_url=base, timeout=30) as http:
        assert _call(http, token, "s0002", "events").status_code == 200
        for name, content in BROKEN.items():
            path.write_bytes(content)
            _eventually(lambda: _call(http, token, "s0002", "cursor").status_code == 503, 3)
            for endpoint in FEEDS:
                r = _call(http, token, "s0002", endpoint)
                assert r.status_code == 503, (name, endpoint, r.status_code, r.text[:300])
                detail = r.json()["detail"]
                assert detail.startswith("feeds unavailable: subscriptions.yaml"), (name, detail)
                assert "Traceback" not in detail and str(tmp_path) not in detail, (name, detail)
                assert '"events"' not in r.text and '"records"' not in r.text
            assert _call(http, "tok_0123456789abcdef." + "x" * 43, "s0002", "events").status_code == 401
            t0 = time.monotonic()
            assert http.get("/healthz").json() == {"status": "ok"}, name
            assert time.monotonic() - t0 < 1.0
            path.write_bytes(_valid())  # the valid file back: the feeds answer again
            _eventually(lambda: _call(http, token, "s0002", "events").status_code == 200, 3)
        assert _call(http, token, "s0002", "ack").status_code == 200


def test_unloadable_subscriptions_name_their_problem(tmp_path: Path) -> None:
    expected = {"nested flow 100000 deep": "nest", "nested blocks 200 deep": "nested deeper than 32 levels",
                "alias bomb": "more than 1,000,000 YAML nodes once aliases are expanded",
                "recursive alias": "alias *r", "not UTF-8 (GBK)": "not UTF-8 text",
                "YAML syntax": "not valid YAML", "not the contract": "invalid subscriptions",
                "too large": "more than the 16,777,216"}
    for name, content in BROKEN.items():
        (tmp_path / "subscriptions.yaml").write_bytes(content)
        t0 = time.monotonic()
        with pytest.raises(ConfigError) as err:
            load_subscriptions(tmp_path)
        assert time.monotonic() - t0 < 1.0, name
        assert expected[name] in str(err.value), (name, str(err.value))
        assert "lol" not in str(err.value)  # the document's text is not quoted back
    (tmp_path / "subscriptions.yaml").unlink()
    os.mkfifo(tmp_path / "subscriptions.yaml")  # reading it must not block the server
    with pytest.raises(ConfigError, match="not a regular file"):
        load_subscriptions(tmp_path)
    # anchors and aliases as yaml.safe_dump writes them for shared lists are still fine
    shared = ["name_norm", "area_code"]
    doc = yaml.safe_dump({"a": shared, "b": shared, "c": [shared] * 50})
    assert "*id001" in doc and parse_yaml_bounded(doc)["c"][49] == shared


def test_any_exception_while_loading_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the project's ConfigError: a RecursionError (say) is 503 too, never the old rules."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    store = seed(url, tmp_path)
    token = issue_token(store, "s0002").token
    import feeds.api as api

    with BackgroundServer(create_app(url, tmp_path)) as base, httpx.Client(base_url=base) as http:
        assert _call(http, token, "s0002", "events").status_code == 200

        def explode(*_a, **_k):
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(api, "subscriptions_from_bytes", explode)
        (tmp_path / "subscriptions.yaml").write_bytes(_valid(["s0001"]))
        r = _call(http, token, "s0002", "events")
        assert r.status_code == 503 and "RecursionError" in r.json()["detail"]
        assert _call(http, token, "s0002", "events").status_code == 503  # again: no old rules
        monkeypatch.undo()
        (tmp_path / "subscriptions.yaml").write_bytes(_valid(["s0001"]) + b"# fixed\n")
        assert _call(http, token, "s0002", "events").status_code == 403  # the new rules, at once


def test_same_size_edit_with_restored_mtime_is_noticed(warehouse_url: str, tmp_path: Path) -> None:
    """`cp -p` / `rsync -a` style: same size, mtime set back. Noticed at once through ctime, and within
    ServiceHolder.HASH_INTERVAL (+ a request) by the content hash even where stat shows nothing."""
    store = seed(warehouse_url, tmp_path)
    token = issue_token(store, "s0002").token
    path = tmp_path / "subscriptions.yaml"
    both, only_a = _valid(), _valid(["s0001"])
    only_a += b"#" * (len(both) - len(only_a) - 1) + b"\n"  # pad the comment: the same size
    assert len(only_a) == len(both)
    bound = ServiceHolder.HASH_INTERVAL + 1.0  # the README's "within 2 s"
    app = create_app(warehouse_url, tmp_path)
    with BackgroundServer(app) as base, httpx.Client(base_url=base) as http:
        assert _call(http, token, "s0002", "events").status_code == 200
        st = path.stat()
        path.write_bytes(only_a)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
        took = _eventually(lambda: _call(http, token, "s0002", "events").status_code == 403, bound)
        assert took < bound

        # a filesystem where stat shows no change at all: only the hash of the bytes can tell
        holder = app.state.services
        frozen = holder._file_stamp()
        holder._file_stamp = lambda: frozen
        path.write_bytes(both)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        took = _eventually(lambda: _call(http, token, "s0002", "events").status_code == 200, bound)
        assert took <= bound
        assert _call(http, token, "s0002", "snapshot").status_code == 200


# -- bodies and headers: bounded before any work ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@pytest.fixture()
def served(warehouse_url: str, tmp_path: Path):
    """`enteronce serve` in its own process (the server options as shipped), on this warehouse."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the server's memory")
    store = seed(warehouse_url, tmp_path)
    (tmp_path / "stations.yaml").write_text(STATIONS_YAML, encoding="utf-8")
    token = issue_token(store, "s0001").token
    port = _free_port()
    enteronce = Path(sys.executable).parent / "enteronce"
    cmd = [str(enteronce)] if enteronce.exists() else [sys.executable, "-c", "from pipelines.cli import app; app()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTERONCE_API_")}
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--config", str(tmp_path), "--warehouse",
                             warehouse_url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"enteronce serve exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("enteronce serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield proc, url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        store.dispose()


class Stream:
    """300 MB of body, generated as it is sent: the test holds 1 MiB, and counts what was taken."""

    def __init__(self, total: int = 300 * 1024 * 1024, chunk: int = 1024 * 1024):
        self.total, self.chunk, self.taken = total, b"x" * chunk, 0

    def __iter__(self):
        while self.taken < self.total:
            self.taken += len(self.chunk)
            yield self.chunk


def test_unauthenticated_300mb_post_is_refused_at_once(served) -> None:
    proc, url, token = served
    before = _status(proc.pid)
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        for declared in (True, False):  # Content-Length: 314572800, then chunked with no length
            body = Stream()
            headers = {"Content-Length": str(body.total)} if declared else {}
            t0 = time.perf_counter()
            with httpx.Client(base_url=url, timeout=30) as http:
                r = http.post("/v1/feeds/s0001/ack", content=body, headers=headers)
            took = time.perf_counter() - t0
            assert r.status_code == 413, (declared, r.status_code, r.text[:200])
            assert "request body larger than 65536 bytes" in r.json()["detail"]
            assert took < 2.0, took
            assert body.taken < 64 * 1024 * 1024, body.taken  # the rest was never sent
        # a token holder's oversized ack is cut off too, and an ordinary one still works
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/v1/feeds/s0001/ack", content=Stream(200 * 1024, 10 * 1024), headers=auth)
            assert r.status_code == 413
            assert http.post("/v1/feeds/s0001/ack", json={"seq": 1}, headers=auth).json()["cursor"] == 1
        time.sleep(0.3)
    finally:
        stop.set()
        prober.join(timeout=10)
    after = _status(proc.pid)
    assert len(latencies) >= 5
    assert max(latencies) < 1.0, sorted(latencies)[-5:]  # was a 3.4 s stall
    grew_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"server RSS {before} -> {after}, healthz max {max(latencies) * 1000:.0f} ms over {len(latencies)}")
    assert grew_mb < 40, (before, after)  # was 273 MB -> 1.2 GB before the limit


def test_oversized_and_too_many_headers_are_refused(served) -> None:
    proc, url, token = served
    before = _status(proc.pid)
    with httpx.Client(base_url=url, timeout=30) as http:
        for headers in ({"X-Big": "a" * 40_000}, {"Authorization": "Bearer " + "a" * 40_000},
                        {f"X-H{i}": "1" for i in range(150)}):
            try:
                r = http.get("/v1/feeds/s0001/events", headers=headers)
            except httpx.HTTPError:
                continue  # the parser may hang up before answering: refused all the same
            assert r.status_code in (400, 431), (len(headers), r.status_code)
        # the longest legitimate request: 200 ids of 64 characters
        ids = [("entity_id", f"P{i:04d}".ljust(64, "x")) for i in range(200)]
        r = http.get("/v1/feeds/s0001/records", params=ids, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["records"] == []
    # 10 MB of one header line, raw: the parser stops at its limit and closes
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass
        try:
            answer = sock.recv(100)
        except OSError:
            answer = b""
    assert sent < 10 * 1024 * 1024 or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), (sent, answer)
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert (_status(proc.pid)["VmHWM"] - before["VmRSS"]) / 1024 < 40


def _raw_exchange(url: str, chunks: list[bytes]) -> bytes:
    """Send raw bytes, chunk by chunk (each its own write), and read the answer's first line."""
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(0.002)
        except OSError:
            pass  # the server answered and closed before the rest: its answer is waiting
        answer = b""
        try:
            while b"\r\n" not in answer:
                got = sock.recv(4096)
                if not got:
                    break
                answer += got
        except ConnectionResetError:
            pass  # a close with our bytes unread is a reset, which may drop the answer: refused all the same
    return answer


def test_the_head_bound_counts_the_head_only(served) -> None:
    """The parser's bound (httptools, feeds/http_protocol.py) is on the head: a 60 KB body sent in
    the same write as its head is not a long head, a 30 KB head trickled in 100-byte writes passes,
    and a 40 KB head trickled the same way is refused with 431."""
    proc, url, token = served
    body = json.dumps({"seq": 1, "pad": "x" * 60_000}).encode()
    head = (f"POST /v1/feeds/s0001/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    assert _raw_exchange(url, [head + body]).startswith(b"HTTP/1.1 200")

    def trickled(pad: int) -> list[bytes]:
        raw = (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * pad}\r\nConnection: close\r\n\r\n").encode()
        return [raw[i:i + 1000] for i in range(0, len(raw), 1000)]

    assert _raw_exchange(url, trickled(30_000)).startswith(b"HTTP/1.1 200")
    refused = _raw_exchange(url, trickled(40_000))
    assert refused.startswith(b"HTTP/1.1 431") or refused == b"", refused[:100]
    assert proc.poll() is None and httpx.get(f"{url}/healthz").status_code == 200  # refused, not fallen over
    assert _raw_exchange(url, trickled(30_000)).startswith(b"HTTP/1.1 200")


def test_limits_come_from_options_and_environment() -> None:
    assert ApiLimits() == ApiLimits(max_body_bytes=65536, max_header_bytes=32768, max_headers=100, threads=8)
    env = {"ENTERONCE_API_MAX_BODY_BYTES": "1024", "ENTERONCE_API_MAX_HEADERS": "20", "ENTERONCE_API_THREADS": "3"}
    limits = ApiLimits.from_env(env)
    assert (limits.max_body_bytes, limits.max_header_bytes, limits.max_headers, limits.threads) == (1024, 32768, 20, 3)
    assert ApiLimits.from_env(limits.environ()) == limits
    assert limits.uvicorn_options()["http"].keywords == {"max_head_bytes": 32768}
    for bad in ({"ENTERONCE_API_MAX_BODY_BYTES": "64k"}, {"ENTERONCE_API_MAX_HEADERS": "-1"},
                {"ENTERONCE_API_MAX_BODY_BYTES": "0"}, {"ENTERONCE_API_MAX_HEADER_BYTES": "100"}):
        with pytest.raises(EnteronceError):
            ApiLimits.from_env(bad)


@pytest.mark.parametrize("threads", [2, 5])
def test_at_most_threads_requests_do_their_blocking_work_at_once(tmp_path: Path, threads: int) -> None:
    """The rest wait their turn in the event loop, and are answered all the same."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    seed(url, tmp_path)
    app = create_app(url, tmp_path, limits=ApiLimits(threads=threads))
    lock, running, most = threading.Lock(), [0], [0]

    @app.get("/probe")
    def probe() -> dict:  # a sync endpoint, as the feed endpoints are
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return {}

    with BackgroundServer(app) as base:
        answers: list[int] = []
        calls = [threading.Thread(target=lambda: answers.append(httpx.get(f"{base}/probe", timeout=30).status_code))
                 for _ in range(8)]
        for c in calls:
            c.start()
        for c in calls:
            c.join()
    assert answers == [200] * 8 and most[0] == threads


def test_body_limit_is_configurable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    store = seed(url, tmp_path)
    auth = {"Authorization": f"Bearer {issue_token(store, 's0001').token}"}
    app = create_app(url, tmp_path, limits=ApiLimits(max_body_bytes=16))
    with BackgroundServer(app) as base, httpx.Client(base_url=base) as http:
        assert http.post("/v1/feeds/s0001/ack", json={"seq": 1}, headers=auth).status_code == 200  # 10 bytes
        r = http.post("/v1/feeds/s0001/ack", content=b'{"seq": 1}' + b" " * 10, headers={
            **auth, "Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["connection"] == "close"


# -- integers: digits only, within the warehouse's INTEGER ---------------------------------------------
WEIRD = ["1e3", "+5", " 5", "5 ", "99999999999999999999", "-1", "-0", "1_000", "007", "5.0", "0x10", "",
         "١٢", "１２", str(INT4_MAX + 1), str(2**63)]


def test_weird_integers_get_422(warehouse_url: str, tmp_path: Path) -> None:
    store = seed(warehouse_url, tmp_path)
    auth = {"Authorization": f"Bearer {issue_token(store, 's0001').token}"}
    assert MAX_SEQ == INT4_MAX  # change_events.seq and feed_cursors.acked_seq are INTEGER
    with BackgroundServer(create_app(warehouse_url, tmp_path)) as base, httpx.Client(base_url=base) as http:
        for value in WEIRD:
            for endpoint, name in (("events", "after"), ("events", "limit"), ("snapshot", "limit")):
                r = http.get(f"/v1/feeds/s0001/{endpoint}", params={name: value}, headers=auth)
                assert r.status_code == 422, (endpoint, name, value, r.status_code)
        raw = http.get("/v1/feeds/s0001/events?after=+5", headers=auth)  # '+' is a space in a query
        assert raw.status_code == 422
        for body in ({"seq": "5"}, {"seq": 5.0}, {"seq": True}, {"seq": -1}, {"seq": INT4_MAX + 1},
                     {"seq": 10**30}, {"seq": None}, {"seq": [5]}):
            r = http.post("/v1/feeds/s0001/ack", json=body, headers=auth)
            assert r.status_code == 422, (body, r.status_code)
        for name in ("after_entity",):
            assert http.get("/v1/feeds/s0001/snapshot", params={name: "P" * 65}, headers=auth).status_code == 422
        assert http.get("/v1/feeds/s0001/records", params={"entity_id": "P" * 65}, headers=auth).status_code == 422
        # the bounds themselves are fine on both databases: no 500 from an int4 overflow
        page = http.get("/v1/feeds/s0001/events", params={"after": str(INT4_MAX), "limit": "5000"}, headers=auth)
        assert page.status_code == 200 and page.json()["events"] == []
        assert http.get("/v1/feeds/s0001/events", params={"after": "0", "limit": "1"}, headers=auth).status_code == 200
        assert http.post("/v1/feeds/s0001/ack", json={"seq": INT4_MAX}, headers=auth).status_code == 409
        assert http.post("/v1/feeds/s0001/ack", json={"seq": N + 1}, headers=auth).json()["cursor"] == N + 1
    spec = create_app(warehouse_url, tmp_path).openapi()
    after = spec["paths"]["/v1/feeds/{subscriber}/events"]["get"]["parameters"][1]["schema"]["anyOf"][0]
    assert after == {"type": "integer", "minimum": 0, "maximum": INT4_MAX}


# -- /docs and /redoc on a closed network ------------------------------------------------------------
@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{root / 'warehouse.sqlite'}"
    seed(url, root)
    with BackgroundServer(create_app(url, root)) as base:
        yield base


def test_docs_pages_reference_nothing_outside(docs_server: str) -> None:
    with httpx.Client(base_url=docs_server) as http:
        for page in ("/docs", "/redoc"):
            r = http.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert not re.search(r"(?i)https?://", r.text), page
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "http" not in csp and "*" not in csp
            refs = re.findall(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""", r.text)
            assert refs, page
            for ref in refs:
                assert ref.startswith("/") and not ref.startswith("//"), (page, ref)
                asset = http.get(ref)
                assert asset.status_code == 200, (page, ref)
        assert http.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
        assert b"cdn.redoc.ly" not in http.get("/docs-assets/redoc.js").content
        assert not re.search(r"https?://", http.get("/openapi.json").text)
        assert http.get("/docs/oauth2-redirect").status_code == 404  # not used: bearer tokens only
        assert http.get("/docs-assets/../api.py").status_code == 404


def _browser_or_skip():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        pytest.fail(reason) if IN_CI else pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed (pip install -e '.[test]')"
        pytest.fail(reason) if IN_CI else pytest.skip(reason)
    return sync_playwright


def test_docs_work_in_a_browser_with_no_network(docs_server: str) -> None:
    """Swagger UI and ReDoc render the API in headless Chromium; every request the pages make goes
    to the API itself (anything else is aborted and reported), with no console errors."""
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--headless"])
        try:
            for path in ("/docs", "/redoc"):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                outside: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))

                def route(r, outside=outside):
                    if r.request.url.startswith((docs_server, "data:", "blob:")):
                        r.continue_()
                    else:
                        outside.append(r.request.url)
                        r.abort()

                page.route("**/*", route)
                page.goto(docs_server + path)
                page.get_by_text("Change events after a sequence number").last.wait_for(timeout=20_000)
                page.get_by_text("Acknowledge: advance the subscriber's cursor").last.wait_for(timeout=5_000)
                page.wait_for_timeout(500)
                assert outside == [], (path, outside)
                assert errors == [], (path, errors)
                page.close()
        finally:
            browser.close()

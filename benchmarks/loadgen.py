"""A lean HTTP/1.1 load generator for the API benchmarks: `clients` keep-alive connections on one
asyncio loop in a forked process of its own, each sending its requests back to back (a closed loop).

httpx in threads costs about a millisecond of client CPU per request, on the same two cores as
the server under test; this client writes the request bytes and reads the answer with
Content-Length framing only, so what the figures measure is the server.

    from loadgen import run_load
    times_ms, wall_s, statuses, counted = run_load(host, port, requests_per_client, count=b'"event_id":')

`server_cpu_s(pid)` is the CPU time the server under test has used, its worker processes included.

`requests_per_client[i]` is a list of (method, path, headers dict, body bytes | None); `count`, if
given, is counted in every answer's body (`counted`: the total), e.g. the events of feed pages.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path


async def _client(host: str, port: int, requests: list[tuple], out: list[float], statuses: Counter,
                  count: bytes | None, counted: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for method, path, headers, body in requests:
            head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            if body is not None:
                head.append(f"Content-Length: {len(body)}")
            raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
            t = time.perf_counter()
            writer.write(raw)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            out.append((time.perf_counter() - t) * 1000)
            statuses[int(status_line.split()[1])] += 1
            if count:
                counted.append(body.count(count))
    finally:
        writer.close()


async def _run(host: str, port: int, per_client: list[list[tuple]], count: bytes | None
               ) -> tuple[list[float], float, dict, int]:
    times: list[float] = []
    statuses: Counter = Counter()
    counted: list[int] = []
    t = time.perf_counter()
    await asyncio.gather(*(_client(host, port, reqs, times, statuses, count, counted) for reqs in per_client))
    return times, time.perf_counter() - t, dict(statuses), sum(counted)


def _child(host: str, port: int, per_client: list[list[tuple]], count: bytes | None, conn) -> None:
    conn.send(asyncio.run(_run(host, port, per_client, count)))
    conn.close()


def run_load(host: str, port: int, per_client: list[list[tuple]], *, count: bytes | None = None
             ) -> tuple[list[float], float, dict, int]:
    """Latencies in ms, wall seconds and status counts of every request, and the total of `count`
    in the bodies, from a child process (so the caller's threads and GIL do not slow the client
    down)."""
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(host, port, per_client, count, child))
    proc.start()
    child.close()
    got = parent.recv()
    proc.join()
    return got


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used by a process and its descendants (uvicorn's
    worker processes): per request, the server's cost, which other work on a shared machine
    inflates far less than it inflates latency."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += [int(c) for c in children]
    return total

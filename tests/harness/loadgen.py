"""Steady HTTP load through a load balancer, and what its backends did meanwhile.

Shared by the deploy scenario (molecule/deploy) and `make bench-deploy`. Worker threads send a
fixed total rate of requests over keep-alive connections, as browsers and API clients do: reads
(/version, /records) and writes (POST /records), so the database path is part of every deploy. A
request fails when it raises (refused, reset, timed out) or answers anything but 2xx. A watcher
reads HAProxy's stats CSV every 100 ms and records when each server leaves and rejoins UP.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

REQUEST_TIMEOUT_S = 10.0
# One request in four writes: reads and writes both go through each deploy.
PLAN = (
    ("GET", "/version", None),
    ("GET", "/records", None),
    ("GET", "/version", None),
    ("POST", "/records", {"source": "loadgen"}),
)


@dataclass
class Result:
    started: float
    method: str
    path: str
    status: int  # 0 when the request raised
    latency_ms: float
    error: str = ""
    version: str = ""

    @property
    def failed(self) -> bool:
        return not 200 <= self.status < 300


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    # server name -> [(left UP at, back UP at or None)], from the stats watcher
    outages: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    # moments when no server of the backend was UP
    none_up: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.failed]

    def percentile_ms(self, q: int) -> float:
        latencies = sorted(r.latency_ms for r in self.results if not r.failed)
        if len(latencies) < 2:
            return latencies[0] if latencies else 0.0
        return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1]

    @property
    def rate(self) -> float:
        return len(self.results) / self.duration_s if self.duration_s else 0.0

    def versions(self) -> list[str]:
        """The versions /version answered, in order, without repeats."""
        seen: list[str] = []
        for result in sorted(self.results, key=lambda r: r.started):
            if result.version and (not seen or seen[-1] != result.version):
                seen.append(result.version)
        return seen

    def summary(self) -> str:
        failures = self.failures
        lines = [
            f"requests={len(self.results)} failed={len(failures)} rate={self.rate:.1f}/s "
            f"p50_ms={self.percentile_ms(50):.1f} p95_ms={self.percentile_ms(95):.1f}"
        ]
        lines += [
            f"  {f.method} {f.path} at +{f.started:.2f}s: {f.status} {f.error}"
            for f in failures[:10]
        ]
        return "\n".join(lines)


def _worker(
    base: tuple[str, int],
    slot: tuple[int, int],
    interval: float,
    stop: threading.Event,
    out: list[Result],
) -> None:
    """Worker `slot` = (index, count): one request every `interval` seconds, staggered."""
    host, port = base
    offset, workers = slot
    connection: http.client.HTTPConnection | None = None
    origin = time.monotonic()
    next_at = origin + offset * interval / workers
    count = offset
    while not stop.is_set():
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_at += interval
        method, path, body = PLAN[count % len(PLAN)]
        count += 1
        started = time.monotonic()
        payload = json.dumps(body).encode() if body is not None else None
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
            headers = {"Content-Type": "application/json"} if payload else {}
            connection.request(method, path, body=payload, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            version = ""
            if path == "/version" and reply.status == 200:
                version = json.loads(data).get("version", "")
            if reply.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
            out.append(
                Result(started - origin, method, path, reply.status, _ms(started), "", version)
            )
        except (OSError, http.client.HTTPException, ValueError) as error:
            if connection is not None:
                connection.close()
            connection = None
            out.append(Result(started - origin, method, path, 0, _ms(started), repr(error)))


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _stats(stats_url: str, backend: str) -> dict[str, str]:
    with urllib.request.urlopen(stats_url, timeout=2) as reply:
        text = reply.read().decode()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        r["svname"]: r["status"]
        for r in rows
        if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
    }


def _watch(stats_url: str, backend: str, stop: threading.Event, report: Report) -> None:
    origin = time.monotonic()
    down_since: dict[str, float] = {}
    while not stop.is_set():
        now = time.monotonic() - origin
        try:
            states = _stats(stats_url, backend)
        except OSError:
            states = {}
        for server, status in states.items():
            up = status.startswith("UP")
            if not up and server not in down_since:
                down_since[server] = now
            elif up and server in down_since:
                report.outages.setdefault(server, []).append((down_since.pop(server), now))
        if states and not any(s.startswith("UP") for s in states.values()):
            report.none_up.append(now)
        stop.wait(0.1)
    for server, since in down_since.items():
        report.outages.setdefault(server, []).append((since, None))


@contextmanager
def load(
    host: str,
    port: int = 80,
    rate: float = 60.0,
    workers: int = 16,
    stats_url: str = "",
    backend: str = "api_nodes",
) -> Iterator[Report]:
    """Send `rate` requests per second to host:port until the block ends; yields the report,
    complete once the block has ended. With stats_url (HAProxy's `/stats;csv`), also watch the
    servers of `backend`."""
    report = Report()
    stop = threading.Event()
    per_worker: list[list[Result]] = [[] for _ in range(workers)]
    interval = workers / rate
    threads = [
        threading.Thread(
            target=_worker,
            args=((host, port), (i, workers), interval, stop, per_worker[i]),
            daemon=True,
        )
        for i in range(workers)
    ]
    if stats_url:
        threads.append(
            threading.Thread(target=_watch, args=(stats_url, backend, stop, report), daemon=True)
        )
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        yield report
    finally:
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S + 5)
        report.duration_s = time.monotonic() - started
        report.results = sorted((r for rs in per_worker for r in rs), key=lambda r: r.started)

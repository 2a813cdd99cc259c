"""The worker's HTTP endpoint on loopback: health from the loop, timeouts, bounded threads."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from streams.worker.health import Progress
from streams.worker.metrics import PipelineMetrics
from streams.worker.web import WorkerWeb
from tests.worker.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def web(clock: FakeClock) -> Iterator[tuple[WorkerWeb, Progress]]:
    progress = Progress(stall_ms=10_000, clock=clock)
    metrics = PipelineMetrics()
    metrics.applied.inc(3)
    server = WorkerWeb(
        "127.0.0.1",
        0,
        metrics,
        lambda: progress.report(runtime="test"),
        read_timeout_s=0.5,
        max_connections=4,
    )
    try:
        yield server, progress
    finally:
        server.close()


def get(server: WorkerWeb, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthz_follows_the_loops_progress_not_the_web_thread(
    web: tuple[WorkerWeb, Progress], clock: FakeClock
) -> None:
    server, progress = web
    status, body = get(server, "/healthz")
    assert status == 200 and orjson.loads(body)["status"] == "ok"
    clock.advance(34.761)  # the loop made no progress for 34 s: the web thread still answers
    status, body = get(server, "/healthz")
    report: dict[str, Any] = orjson.loads(body)
    assert status == 503 and report["status"] == "stalled"
    assert report["last_loop_ms_ago"] == 34_761
    progress.beat()
    assert get(server, "/healthz")[0] == 200


def test_metrics_and_unknown_paths(web: tuple[WorkerWeb, Progress]) -> None:
    server, _ = web
    status, body = get(server, "/metrics")
    assert status == 200 and b"relsec_events_applied_total 3.0" in body
    assert get(server, "/nope")[0] == 404


def test_a_client_that_says_nothing_is_closed_after_the_read_timeout(
    web: tuple[WorkerWeb, Progress],
) -> None:
    server, _ = web
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(1) == b"", "closed by the server"
        assert time.monotonic() - started < 3.0


def test_a_client_that_drips_its_request_is_closed_at_the_deadline_too(
    web: tuple[WorkerWeb, Progress],
) -> None:
    server, _ = web
    closed_after: list[float] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        started = time.monotonic()

        def wait_for_close() -> None:
            try:
                while slow.recv(1024):
                    pass
            except OSError:
                pass
            closed_after.append(time.monotonic() - started)

        reader = threading.Thread(target=wait_for_close, daemon=True)
        reader.start()
        # A byte every 0.1 s: each read would be within a per-read timeout of 0.5 s.
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60:
            if closed_after:
                break
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        reader.join(5)
    assert closed_after and closed_after[0] < 2.0, closed_after


def test_many_slow_clients_do_not_get_a_thread_each_and_health_still_answers(
    web: tuple[WorkerWeb, Progress],
) -> None:
    server, _ = web
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(300)]
    try:
        time.sleep(0.3)
        # At most max_connections handler threads, whatever the number of clients.
        assert threading.active_count() - before <= 4
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline and status != 200:
            try:
                status = get(server, "/healthz", timeout=1)[0]
            except OSError:
                time.sleep(0.1)  # refused while the slots are taken: the slow ones time out
        assert status == 200
    finally:
        for s in idle:
            s.close()

"""The ingest gateway under a careless or hostile client, measured from outside.

    python benchmarks/gateway_bench.py [--code DIR] [--findings 9000]

Starts ``relsec ingest serve`` as a subprocess on a free 127.0.0.1 port (its Kafka
address is unreachable on purpose: nothing here needs a write to succeed) and plays:

1. **report**: one token-authenticated Trivy report of ``--findings`` findings
   (~10 MB) while ``/healthz`` is polled every 50 ms: the report's time and the
   largest and median ``/healthz`` latency while it was in flight;
2. **unsigned uploads**: 40 parallel 9 MiB uploads to ``/v1/ingest/pagerduty`` with
   no signature: the time until all are answered and the server's peak RSS (VmHWM)
   before and after;
3. **slow heads**: 220 connections sending a request head one byte per second:
   how many are still open 15 s later;
4. **undecodable header**: a ``X-Relsec-Token`` of bytes that are not UTF-8: the status.

``--code DIR`` runs the server from another checkout (for example
``git archive <commit> | tar -x -C DIR``) to measure the same scenarios before a change.
5. **throughput** (this tree only): 200 signed PagerDuty deliveries through the gateway
   in-process with a publisher that discards: one at a time (p50, p95), then all at once.

Prints one JSON object per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-t0ken"
LOOPBACK = "127.0.0.1"


def _report(findings: int) -> bytes:
    report = json.loads((REPO / "tests/data/payloads/trivy/checkout-2.4.0.scan1.json").read_text())
    template = report["Results"][0]["Vulnerabilities"][0]
    vulns = []
    for i in range(findings):
        v = copy.deepcopy(template)
        v.update(
            VulnerabilityID=f"CVE-2026-{10000 + i}",
            PkgName=f"lib{i % 700}",
            PkgID=f"lib{i % 700}@1.{i % 13}",
            Severity=("CRITICAL", "HIGH", "MEDIUM", "LOW")[i % 4],
            Description="A flaw was found in the package. " * 25,
        )
        vulns.append(v)
    report["Results"][0]["Vulnerabilities"] = vulns
    return json.dumps(report).encode()


class Server:
    """``relsec ingest serve`` in a subprocess, its port read from its start-up line."""

    def __init__(self, code: Path | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELSEC_INGEST_")}
        env.update(
            RELSEC_INGEST_TOKEN=TOKEN,
            RELSEC_INGEST_PAGERDUTY_SECRET="bench-s3cret",
            RELSEC_BOOTSTRAP_SERVERS="127.0.0.1:1",
        )
        if code is not None:
            env["PYTHONPATH"] = str(code)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "ingest", "serve", "--port", "0"],
            cwd=code or REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        self.port = 0
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        assert self.port, "the gateway did not start"
        self.log_lines: list[str] = []
        # keep reading its log: a full pipe would block the server's event loop
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log_lines.append(line)

    def memory_kib(self, field: str) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
        return int(m.group(1)) if m else -1

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def report_under_health_polling(port: int, findings: int) -> dict[str, Any]:
    body = _report(findings)
    base = f"http://{LOOPBACK}:{port}"
    timeout = aiohttp.ClientTimeout(total=300)
    async with (
        aiohttp.ClientSession(base, timeout=timeout) as ingest,
        aiohttp.ClientSession(base, timeout=timeout) as health,
    ):
        started = time.monotonic()
        upload = asyncio.create_task(
            ingest.post("/v1/ingest/trivy", data=body, headers={"X-Relsec-Token": TOKEN})
        )
        latencies: list[float] = []
        while not upload.done():
            t = time.monotonic()
            async with health.get("/healthz") as resp:
                await resp.read()
            if not upload.done():
                latencies.append(time.monotonic() - t)
            await asyncio.sleep(0.05)
        resp = await upload
        took = time.monotonic() - started
        status = resp.status
        resp.release()
    return {
        "scenario": "report",
        "body_mb": round(len(body) / 1e6, 1),
        "status": status,
        "report_s": round(took, 2),
        "healthz_samples": len(latencies),
        "healthz_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "healthz_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
    }


async def unsigned_uploads(
    server: Server, uploads: int = 40, size: int = 9 * 1024 * 1024
) -> dict[str, Any]:
    body = b"x" * size
    before = server.memory_kib("VmHWM")
    started = time.monotonic()

    async def one() -> int:
        reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
        try:
            writer.write(
                f"POST /v1/ingest/pagerduty HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
                f"Content-Length: {size}\r\n\r\n".encode()
            )
            try:
                for i in range(0, size, 256 * 1024):
                    writer.write(body[i : i + 256 * 1024])
                    await writer.drain()
            except ConnectionError:
                pass  # refused from the head: the server stopped reading
            line = await asyncio.wait_for(reader.readline(), 120)
            return int(line.split()[1]) if line else 0
        except (ConnectionError, TimeoutError, IndexError):
            return 0
        finally:
            writer.close()

    statuses = await asyncio.gather(*(one() for _ in range(uploads)))
    return {
        "scenario": "unsigned uploads",
        "uploads": uploads,
        "size_mib": size // (1024 * 1024),
        "statuses": sorted(set(statuses)),
        "all_answered_s": round(time.monotonic() - started, 2),
        "rss_peak_before_mb": round(before / 1024, 1),
        "rss_peak_after_mb": round(server.memory_kib("VmHWM") / 1024, 1),
    }


async def slow_heads(port: int, clients: int = 220, wait_s: float = 15.0) -> dict[str, Any]:
    conns = []
    for _ in range(clients):
        conns.append(await asyncio.open_connection(LOOPBACK, port))
    stop = time.monotonic() + wait_s

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """True when the connection is still open at the end."""
        head = b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
        i = 0
        while time.monotonic() < stop:
            try:
                writer.write(head[i : i + 1] if i < len(head) else b"a")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(1024), 1.0)
                if data == b"":
                    return False
            except TimeoutError:
                pass
            except ConnectionError:
                return False
            i += 1
        return True

    open_at_end = await asyncio.gather(*(trickle(r, w) for r, w in conns))
    for _, writer in conns:
        writer.close()
    return {
        "scenario": "slow heads",
        "clients": clients,
        "after_s": wait_s,
        "still_open": sum(open_at_end),
    }


async def undecodable_header(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(
        b"POST /v1/ingest/trivy HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Relsec-Token: \xff\xfe\x80x\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return {"scenario": "undecodable header", "status": int(line.split()[1])}


async def throughput(deliveries: int = 200) -> dict[str, Any]:
    """Signed PagerDuty deliveries through this tree's gateway in-process, publishing
    nowhere (the gateway's own cost): one at a time, then all at once."""
    sys.path.insert(0, str(REPO))
    from streams.ingest import SOURCES
    from streams.ingest.gateway import GatewayConfig, running_gateway
    from streams.ingest.signatures import Secrets, sign_pagerduty

    class Discard:
        async def publish(self, events: Any) -> None:
            return None

    body = (REPO / "tests/data/payloads/pagerduty/incident.triggered.json").read_bytes()
    headers = {"X-PagerDuty-Signature": sign_pagerduty(b"bench-s3cret", body)}
    secrets = Secrets.from_env(SOURCES, {"RELSEC_INGEST_PAGERDUTY_SECRET": "bench-s3cret"})
    async with (
        running_gateway(Discard(), GatewayConfig(secrets=secrets), LOOPBACK, 0) as gw,
        aiohttp.ClientSession(f"http://{LOOPBACK}:{gw.port}") as client,
    ):
        times = []
        for _ in range(deliveries):
            t = time.monotonic()
            async with client.post("/v1/ingest/pagerduty", data=body, headers=headers) as r:
                assert r.status == 202
                await r.read()
            times.append(time.monotonic() - t)
        times.sort()

        async def one() -> int:
            async with client.post("/v1/ingest/pagerduty", data=body, headers=headers) as r:
                await r.read()
                return r.status

        t = time.monotonic()
        statuses = await asyncio.gather(*(one() for _ in range(deliveries)))
        concurrent_s = time.monotonic() - t
    return {
        "scenario": "throughput (no broker)",
        "deliveries": deliveries,
        "sequential_p50_ms": round(times[len(times) // 2] * 1000, 2),
        "sequential_p95_ms": round(times[int(len(times) * 0.95)] * 1000, 2),
        "concurrent_per_s": round(deliveries / concurrent_s),
        "concurrent_statuses": sorted(set(statuses)),
    }


async def main_async(args: argparse.Namespace) -> None:
    if args.code is None:
        print(json.dumps(await throughput()), flush=True)
    server = Server(args.code)
    try:
        print(json.dumps(await undecodable_header(server.port)), flush=True)
        print(json.dumps(await report_under_health_polling(server.port, args.findings)), flush=True)
        print(json.dumps(await unsigned_uploads(server)), flush=True)
        print(json.dumps(await slow_heads(server.port)), flush=True)
        tracebacks = sum(line.startswith("Traceback") for line in server.log_lines)
        print(json.dumps({"log_lines": len(server.log_lines), "tracebacks": tracebacks}))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=None, help="run the server from this tree")
    parser.add_argument("--findings", type=int, default=9000, help="findings in the report")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

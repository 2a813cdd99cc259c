"""``relsec demo --keep`` on the session's broker: the story, the check that denies the
seed's rollback, the timeline's URL; the stack stays up until SIGINT, then stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.devkafka import pick_free_ports

pytestmark = pytest.mark.kafka


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_demo_keep_prints_the_timeline_and_a_denying_check(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = pick_free_ports(1)[0]
    env = {**os.environ, "RELSEC_BOOTSTRAP_SERVERS": kafka_bootstrap}
    env.pop("RELSEC_API_TOKEN", None)
    prefix = f"t-demo-{int(time.time() * 1000)}."
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--keep",
            "--api-port",
            str(port),
            "--topic-prefix",
            prefix,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        # Ctrl-C at a terminal, whatever this run inherited: a background job of a
        # non-interactive shell (`.ci/run &`) starts with SIGINT ignored, and Python then
        # keeps ignoring it, as it should.
        preexec_fn=_interruptible,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if "Ctrl-C stops it" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(180), "\n".join(lines[-40:])
        text = "\n".join(lines)
        command = re.search(r"try it: (relsec check [^\n]+?)\s+\(exits 2", text)
        assert command, text
        assert command.group(1).startswith("relsec check checkout-api production 2.7.0")
        assert "--action rollback" in command.group(1)
        assert "DENY: rollback of checkout-api production to 2.7.0" in text
        timeline = re.search(r"the timeline: (http://127\.0\.0\.1:\d+/ui/service\?name=\S+)", text)
        assert timeline, text
        with urllib.request.urlopen(timeline.group(1), timeout=10) as resp:
            assert resp.status == 200 and b"timeline.js" in resp.read()
        args = command.group(1).split()[2:]
        check = subprocess.run(
            [sys.executable, "-m", "streams.cli", "check", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 2, check.stdout + check.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert orjson.loads(resp.read())["status"] == "ok"
        # The screen shows the story only: no librdkafka lines, no Python warnings.
        assert not [x for x in lines if x.startswith("%") or "GETPID" in x], text
        assert "Warning" not in text, text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGTERM)  # its own handler stops the stack
            proc.wait(60)
            raise AssertionError(
                "the demo did not stop within 60 s of SIGINT:\n" + "\n".join(lines[-30:])
            ) from None
        reader.join(10)
    assert proc.returncode == 0, "\n".join(lines[-20:])
    assert "relsec api stopped" in "\n".join(lines)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3)

"""A relsec api served from a thread, and Debian's Chromium driven by Playwright.

Playwright's own browser download cannot be fetched here (nor is it wanted): the tests
drive the system Chromium (``apt-get install chromium``; ``make browser`` installs it).
A missing browser fails the test, it never skips.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streams.api.server import Api, ApiServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def served(api: Api) -> Iterator[str]:
    """Serve ``api`` on a free 127.0.0.1 port from a thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    server = ApiServer(api)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="relsec-api-test", daemon=True)
    thread.start()
    assert ready.wait(20), "the API did not start"
    try:
        yield server.url
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)
        loop.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's) under Playwright."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

"""Fixtures for the notify tests: an alert factory and a recording HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from notify_helpers import Recorder, build_alert


@pytest.fixture
def make_alert() -> Callable[..., dict[str, Any]]:
    return build_alert


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    try:
        yield server
    finally:
        server.close()

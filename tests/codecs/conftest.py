"""Fixtures of the codec tests."""

from __future__ import annotations

import pytest

from streams.codecs import SingleObjectCodec


@pytest.fixture(scope="session")
def codec() -> SingleObjectCodec:
    return SingleObjectCodec()

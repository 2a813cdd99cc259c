"""How the local Kafka provisioner reports progress: a callable that takes one line of text.

``relsec kafka up`` passes one that prints to stderr, the test fixtures one that prints with
a ``[kafka]`` prefix; the library default says nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def no_log(_message: str) -> None:
    """The default :data:`Log`: drop the message."""
    return None

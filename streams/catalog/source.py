"""A catalog that follows its files: the gateway's view, picked up without a restart.

:class:`CatalogSource` re-stats the catalog files (and lists the folders again,
so an added or removed file counts) at most every ``check_interval_s`` seconds
and reloads when anything changed. Either lazily, when asked for the current
catalog, or, after :meth:`CatalogSource.start_watching`, on a daemon thread, so
that a request never waits for a reload (200 components load in about 0.13 s):
``current()`` then only reads a reference. A new catalog that does not load (a
YAML error, a conflict) is not used: the last good one stays, and the reason is
logged once per change of the files and kept for ``/healthz``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from streams.catalog.entities import catalog_files
from streams.catalog.errors import CatalogError
from streams.catalog.index import Catalog, load_catalog

log = logging.getLogger("relsec.catalog")

DEFAULT_CHECK_INTERVAL_S: Final = 5.0

Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprint(paths: Sequence[str]) -> Fingerprint:
    files, problems = catalog_files(paths)
    out: list[tuple[str, int, int]] = [(p, -1, -1) for p in problems]
    for path in files:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


class CatalogSource:
    """The current catalog of some paths, reloaded when the files change.

    Construction loads the catalog and raises :class:`CatalogError` when it cannot:
    a process must not start on a broken catalog. Later failures keep the last good one.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._fingerprint = _fingerprint(self.paths)
        self._catalog = load_catalog(self.paths)
        self._checked_at = clock()
        self.loads = 1
        self.reload_failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        """The last good catalog, without looking at the files."""
        return self._catalog

    def current(self) -> Catalog:
        """The catalog, reloaded first when the files changed (checked at most every interval);
        while watching, the watcher does that and this only reads the last good catalog."""
        if self._watcher is not None:
            return self._catalog
        now = self._clock()
        if now - self._checked_at < self.check_interval_s:
            return self._catalog
        self._checked_at = now
        self.refresh()
        return self._catalog

    def start_watching(self) -> None:
        """Check the files every interval on a daemon thread (stopped by :meth:`close`)."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, name="relsec-catalog", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(max(self.check_interval_s, 0.1)):
            try:
                self.refresh()
            except Exception:  # a watcher that dies would freeze the catalog silently
                log.exception("catalog check failed; trying again in %.1f s", self.check_interval_s)

    def close(self) -> None:
        """Stop the watcher thread, if any."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def refresh(self) -> bool:
        """Reload now if the files changed; True when a new catalog is in use."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        fingerprint = _fingerprint(self.paths)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            catalog = load_catalog(self.paths)
        except CatalogError as exc:
            self.reload_failures += 1
            self.last_error = str(exc)
            log.error(
                "catalog change not used, keeping the last good catalog (%d components): %s",
                len(self._catalog),
                "; ".join(exc.problems[:5]) or exc,
            )
            return False
        self._catalog = catalog
        self.loads += 1
        self.last_error = None
        log.info("catalog reloaded: %d components from %d files", len(catalog), len(catalog.files))
        return True

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: what is loaded and whether the last change was refused."""
        return {
            "components": len(self._catalog),
            "files": len(self._catalog.files),
            "loads": self.loads,
            "reload_failures": self.reload_failures,
            "last_error": self.last_error,
        }


__all__ = ["DEFAULT_CHECK_INTERVAL_S", "CatalogSource"]

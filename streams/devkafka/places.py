"""Where the local Kafka keeps things: the cache root, cluster state directories, the pom.

The cache root (``$RELSEC_CACHE_DIR``, default ``~/.cache/relsec``) holds the provisioned
jars (``kafka/<version>/libs``), the Maven repository (``m2``), class-data archives
(``cds``) and, under ``run/<name>``, the state directory of each named cluster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from streams.devkafka.errors import KafkaProvisionError
from streams.devkafka.settings import CACHE_DIR
from streams.settings import from_env

DEFAULT_NAME = "local"

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$RELSEC_CACHE_DIR``, else ``~/.cache/relsec``: jars, Maven repository, state dirs."""
    e = os.environ if env is None else env
    configured = from_env(CACHE_DIR, e)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "relsec"


def default_state_dir(name: str = DEFAULT_NAME, env: Mapping[str, str] | None = None) -> Path:
    """Where ``relsec kafka up`` keeps the cluster called ``name``."""
    if not _CLUSTER_NAME.fullmatch(name):
        raise KafkaProvisionError(f"cluster name {name!r}: use letters, digits, '.', '_', '-'")
    return cache_root(env) / "run" / name


def kafka_cache_dir(version: str, env: Mapping[str, str] | None = None) -> Path:
    """The cache directory of Apache Kafka ``version`` (its ``libs/`` and markers)."""
    return cache_root(env) / "kafka" / version


def cds_dir(env: Mapping[str, str] | None = None) -> Path:
    """The cache directory of the brokers' class-data archives."""
    return cache_root(env) / "cds"


def repo_pom_path() -> Path:
    """``deploy/kafka/pom.xml`` of the source tree this module was loaded from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"

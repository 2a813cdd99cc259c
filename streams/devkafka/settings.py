"""The environment of the local Apache Kafka (a development tool), declared once.

Each variable is a :class:`streams.settings.Setting` (environment only: ``relsec
kafka up`` has its own flags) and is read with :func:`streams.settings.from_env`,
so docs/settings.md lists them with the product's settings.
"""

from __future__ import annotations

from typing import Any, Final

from streams.settings import TEXT, Setting

CACHE_DIR: Final = Setting(
    "cache_dir",
    TEXT,
    None,
    "cache of the local Kafka: jars, the Maven repository, state directories",
    env="RELSEC_CACHE_DIR",
    flag=None,
    default_text="~/.cache/relsec",
)
JAVA: Final = Setting(
    "java",
    TEXT,
    None,
    "the java executable that runs the local Kafka",
    env="RELSEC_JAVA",
    flag=None,
    default_text="$JAVA_HOME/bin/java, else java on PATH",
)
JVM_OPTS: Final = Setting(
    "jvm_opts",
    TEXT,
    None,
    "extra JVM options of each local Kafka node, separated by spaces",
    env="RELSEC_KAFKA_JVM_OPTS",
    flag=None,
)
CDS: Final = Setting(
    "cds",
    TEXT,
    "1",
    "0 turns off the class-data archive that makes local Kafka nodes start faster",
    env="RELSEC_KAFKA_CDS",
    flag=None,
)
TARBALL_URL: Final = Setting(
    "tarball_url",
    TEXT,
    None,
    "the Apache Kafka release tarball to fetch when Maven cannot resolve the jars",
    env="RELSEC_KAFKA_TARBALL_URL",
    flag=None,
)
MVN: Final = Setting(
    "mvn",
    TEXT,
    None,
    "the mvn executable that resolves the Kafka jars",
    env="RELSEC_MVN",
    flag=None,
    default_text="mvn on PATH",
)
POM: Final = Setting(
    "pom",
    TEXT,
    None,
    "the Maven pom that names the Kafka jars",
    env="RELSEC_KAFKA_POM",
    flag=None,
    default_text="deploy/kafka/pom.xml of the source tree",
)
MAVEN_REPO: Final = Setting(
    "maven_repo",
    TEXT,
    None,
    "the local Maven repository the jars are resolved into",
    env="RELSEC_MAVEN_REPO",
    flag=None,
    default_text="the cache's m2/",
)
DEVKAFKA_ENVIRONMENT: Final[tuple[Setting[Any], ...]] = (
    CACHE_DIR,
    JAVA,
    JVM_OPTS,
    CDS,
    TARBALL_URL,
    MVN,
    POM,
    MAVEN_REPO,
)

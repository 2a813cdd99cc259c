"""One written form for image names (SPEC §8): the odd cases, and the release alias list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.catalog.images import (
    MAX_ALIASES,
    is_mutable,
    normalize_digest,
    normalize_repository,
    parse_image,
    release_aliases,
)

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", None, None),
        ("nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("library/nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("docker.io/nginx", "docker.io/library/nginx", None, None),
        ("index.docker.io/library/nginx", "docker.io/library/nginx", None, None),
        ("docker.io/acme/app:2.0", "docker.io/acme/app", "2.0", None),
        ("acme/app", "docker.io/acme/app", None, None),
        ("GHCR.IO/Acme/Checkout:2.7.0-RC1", "ghcr.io/acme/checkout", "2.7.0-RC1", None),
        ("localhost:5000/app", "localhost:5000/app", None, None),
        ("localhost:5000/app:1.0", "localhost:5000/app", "1.0", None),
        ("registry.internal:8443/team/svc:v3", "registry.internal:8443/team/svc", "v3", None),
        ("localhost/app", "localhost/app", None, None),
        (f"ghcr.io/acme/checkout@sha256:{HEX.upper()}", "ghcr.io/acme/checkout", None,
         f"sha256:{HEX}"),
        (f"ghcr.io/acme/checkout:2.7.0@sha256:{HEX}", "ghcr.io/acme/checkout", "2.7.0",
         f"sha256:{HEX}"),
        (f"[::1]:5000/app@sha256:{HEX}", "[::1]:5000/app", None, f"sha256:{HEX}"),
        ("quay.io/org/sub/deep/name:tag_1.x", "quay.io/org/sub/deep/name", "tag_1.x", None),
    ],
)  # fmt: skip
def test_parse_image_writes_the_canonical_form(
    text: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_image(text)
    assert ref is not None
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "has space:1",
        "ghcr.io/acme/checkout@sha256:nothex",
        "ghcr.io/acme/checkout@sha256:abc",  # too short for a digest
        "ghcr.io//double",
        "app:-badtag",
        "app:" + "x" * 129,
        "-leading/dash",
        "./relative/path",
        "/abs/path",
        "testdata/fixtures/images/alpine-39.tar.gz:x/y",
    ],
)
def test_not_an_image_reference(text: str) -> None:
    assert parse_image(text) is None


def test_the_forms_tools_meet_on() -> None:
    ref = parse_image(f"Ghcr.io/acme/checkout:2.7.0@sha256:{HEX}")
    assert ref is not None
    assert ref.names() == [
        f"ghcr.io/acme/checkout@sha256:{HEX}",
        f"sha256:{HEX}",
        "ghcr.io/acme/checkout:2.7.0",
        "2.7.0",
    ]
    assert ref.name == "checkout" and ref.version == "2.7.0"
    assert normalize_repository("Nginx") == "docker.io/library/nginx"
    assert normalize_repository("nginx:1") is None  # a reference, not a repository
    assert normalize_digest(f"SHA256:{HEX.upper()}") == f"sha256:{HEX}"


def test_mutable_names_never_link() -> None:
    assert is_mutable("latest") and is_mutable("LATEST") and is_mutable("ghcr.io/a/b:latest")
    assert not is_mutable("2.7.0") and not is_mutable(f"ghcr.io/a/b@sha256:{HEX}")
    aliases = release_aliases(
        "2.7.0",
        ["2.7.0", "latest", "ghcr.io/a/b:latest", None, "", " ghcr.io/a/b:2.7.0 ", "sha256:x",
         "ghcr.io/a/b:2.7.0", "x" * 201],
    )  # fmt: skip
    assert aliases == ["ghcr.io/a/b:2.7.0", "sha256:x"]


@given(
    st.text(alphabet="abc:/.@-_0123456789", max_size=30),
    st.lists(st.text(alphabet="abcLATEST:/.@-_0123456789 ", max_size=12), max_size=100),
)
def test_release_aliases_are_distinct_bounded_and_never_the_release(
    release: str, names: list[str]
) -> None:
    aliases = release_aliases(release or None, names)
    assert len(aliases) == len(set(aliases)) <= MAX_ALIASES
    assert release not in aliases or not release
    assert not any(is_mutable(a) or not a or a != a.strip() for a in aliases)


@given(st.from_regex(r"\A([a-z0-9]{1,8}\.[a-z]{2,4}(:[0-9]{2,5})?/)?([a-z0-9]{1,8}/){0,3}[a-z0-9]{1,10}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,10})?\Z"))
def test_the_canonical_form_is_a_fixed_point(text: str) -> None:
    ref = parse_image(text)
    assert ref is not None
    again = parse_image(ref.tagged or ref.repository)
    assert again == ref

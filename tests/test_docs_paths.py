"""Every repository path the documentation names exists.

README.md and docs/*.md name modules, tests, benchmarks and folders in backticks
(inline code and fenced blocks) and link other documents. A path that was moved or
renamed leaves a newcomer looking for a file that is not there, so each such path is
checked against the checkout: inline or fenced code tokens whose first segment is a
top-level entry of the repository, and relative Markdown links that stay inside it,
with the heading a link's ``#anchor`` names.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_LEVEL = {entry.name for entry in REPO.iterdir() if not entry.name.startswith(".")} | {".ci"}

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
TOKEN_EDGES = "\"'()[]{},;:.!?"
PLACEHOLDER_MARKS = ("…", "<", ">", "$", "|", "=", "@")


def _code_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens of every fenced block and inline code span."""
    tokens: list[str] = []
    for block in FENCE.findall(text):
        tokens.extend(block.split())
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        tokens.extend(span.split())
    return tokens


def _as_repo_path(token: str) -> str | None:
    """The repository path a token names, or None when it names none."""
    candidate = token.split("::", 1)[0].strip(TOKEN_EDGES)
    candidate = re.sub(r":\d+$", "", candidate)
    if any(mark in candidate for mark in PLACEHOLDER_MARKS):
        return None
    first = candidate.split("/", 1)[0]
    if first not in TOP_LEVEL or ("/" not in candidate and "." not in first):
        return None
    return candidate


def _exists(relative: str, base: Path) -> bool:
    if any(mark in relative for mark in "*?["):
        return any(base.glob(relative))
    return (base / relative).exists()


def _named_paths(document: Path) -> list[str]:
    text = document.read_text(encoding="utf-8")
    return [path for path in map(_as_repo_path, _code_tokens(text)) if path]


def _linked_paths(document: Path) -> list[tuple[Path, str]]:
    """Relative links inside the repository: the target file and its anchor ('' if none)."""
    text = document.read_text(encoding="utf-8")
    linked: list[tuple[Path, str]] = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if resolved.is_relative_to(REPO):
            linked.append((resolved, anchor))
    return linked


def _heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        anchor = _heading_anchor(heading)
        suffix = 0
        while (anchor if suffix == 0 else f"{anchor}-{suffix}") in anchors:
            suffix += 1
        anchors.add(anchor if suffix == 0 else f"{anchor}-{suffix}")
    return anchors


def test_every_backticked_repository_path_exists() -> None:
    missing: list[str] = []
    checked = 0
    for document in DOCUMENTS:
        for path in _named_paths(document):
            checked += 1
            if not _exists(path, REPO):
                missing.append(f"{document.relative_to(REPO)}: `{path}`")
    assert checked > 100, f"only {checked} paths found: the extraction is broken"
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_every_relative_link_inside_the_repository_exists() -> None:
    missing: list[str] = []
    checked = 0
    for document in DOCUMENTS:
        for target, anchor in _linked_paths(document):
            checked += 1
            where = f"{document.relative_to(REPO)}: {target.relative_to(REPO)}"
            if not target.exists():
                missing.append(where)
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                missing.append(f"{where}#{anchor} (no such heading)")
    assert checked > 10, f"only {checked} links found: the extraction is broken"
    assert not missing, "links in the docs to files that do not exist:\n" + "\n".join(missing)


def test_the_extraction_recognizes_paths_and_skips_prose() -> None:
    assert _as_repo_path("streams/worker/core.py,") == "streams/worker/core.py"
    assert _as_repo_path("tests/fuzz/test_fuzz_adapters.py::test_x") == (
        "tests/fuzz/test_fuzz_adapters.py"
    )
    assert _as_repo_path("pyproject.toml") == "pyproject.toml"
    assert _as_repo_path("streams") is None
    assert _as_repo_path("relsec.alerts") is None
    assert _as_repo_path("streams/<name>.py") is None
    assert _as_repo_path("--catalog") is None
    assert _heading_anchor("The service catalog (SPEC §8)") == "the-service-catalog-spec-8"
    assert _heading_anchor("Files (`relsec replay`)") == "files-relsec-replay"
    assert _heading_anchor("5. Crash, duplicates and rebalancing") == (
        "5-crash-duplicates-and-rebalancing"
    )

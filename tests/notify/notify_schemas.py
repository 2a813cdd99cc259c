"""What relsec sends, held against the receivers' own definitions.

* PagerDuty Events API v2: the request body schema of ``POST /v2/enqueue``
  (``schemas/pagerduty-events-v2-enqueue.schema.json``, restated from
  PagerDuty's OpenAPI description) and the 512 KB limit of a whole event.
* Slack Block Kit: every block parsed and validated by ``slack_sdk``'s own
  block classes (text lengths, element types), plus the message limits the
  SDK does not check (50 blocks, a fallback ``text``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

SCHEMAS = Path(__file__).resolve().parent / "schemas"
PAGERDUTY_EVENT_MAX_BYTES = 512 * 1024
SLACK_MAX_BLOCKS = 50


@cache
def _pagerduty_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "pagerduty-events-v2-enqueue.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def pagerduty_errors(body: dict[str, Any]) -> list[str]:
    """Why PagerDuty would refuse ``body`` (empty: it would not)."""
    errors = [
        f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in _pagerduty_validator().iter_errors(body)
    ]
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    if size > PAGERDUTY_EVENT_MAX_BYTES:
        errors.append(f"event is {size} bytes, over PagerDuty's {PAGERDUTY_EVENT_MAX_BYTES}")
    return errors


def slack_errors(message: dict[str, Any]) -> list[str]:
    """Why Slack would refuse (or mangle) an incoming-webhook ``message``."""
    errors: list[str] = []
    if not isinstance(message.get("text"), str) or not message["text"]:
        errors.append("no fallback text")
    blocks = message.get("blocks") or []
    if len(blocks) > SLACK_MAX_BLOCKS:
        errors.append(f"{len(blocks)} blocks, over Slack's {SLACK_MAX_BLOCKS}")
    for i, raw in enumerate(blocks):
        block = Block.parse(raw)
        if block is None:
            errors.append(f"block {i}: slack_sdk does not know type {raw.get('type')!r}")
            continue
        try:
            block.validate_json()
        except SlackObjectFormationError as exc:
            errors.append(f"block {i}: {exc}")
        if block.to_dict() != raw:
            errors.append(f"block {i}: slack_sdk reads it differently: {block.to_dict()}")
        for element in raw.get("elements", []):
            if len(element.get("text", "")) > 3000:
                errors.append(f"block {i}: a context element holds more than 3000 characters")
    return errors


def slack_texts(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text of a message: the fallback, each section, each context element."""
    texts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(e["text"] for e in block.get("elements", []))
    return texts

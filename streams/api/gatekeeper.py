"""OPA Gatekeeper external data: relsec as a provider for admission decisions.

Gatekeeper POSTs a ``ProviderRequest`` (``externaldata.gatekeeper.sh/v1beta1``) with a
list of keys; the provider answers a ``ProviderResponse`` with one item per key
(``key``, ``value`` or ``error``) and a ``systemError`` when it cannot answer at all
(Gatekeeper then applies the constraint template's failure handling).

A key is one check, written by the constraint template with Rego's
``urlquery.encode_object``: ``service=…&environment=…&release=…`` (``action``, ``team``
and comma-separated ``aliases`` optional), so names with any characters arrive intact.
An item's value is ``{"verdict", "reasons", "recommended_release"}``: ``reasons`` are
the fired rules' summaries, which the template puts into its violation message.

Why Gatekeeper and not Kyverno's ``apiCall`` (see docs/decisions.md): a fixed,
documented request and response (testable as such), batching and caching by key, and
mutual TLS between Gatekeeper and the provider, so relsec needs no bearer token inside a
policy, and receives no cluster service-account token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs

from agents.errors import ValidationError
from streams.api.check import CheckRequest
from streams.ingest.errors import AdapterError

API_GROUP: Final = "externaldata.gatekeeper.sh"
API_VERSION: Final = f"{API_GROUP}/v1beta1"
MAX_KEYS: Final = 1000


def parse_provider_request(body: Any) -> tuple[str, list[str]]:
    """``(apiVersion, keys)`` of a ProviderRequest; :class:`AdapterError` names the path."""
    if not isinstance(body, Mapping):
        raise AdapterError("gatekeeper", "$", "a ProviderRequest is a JSON object")
    api_version = body.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith(API_GROUP + "/"):
        raise AdapterError("gatekeeper", "$.apiVersion", f"{api_version!r} is not {API_GROUP}/…")
    if body.get("kind") != "ProviderRequest":
        raise AdapterError("gatekeeper", "$.kind", f"{body.get('kind')!r} is not ProviderRequest")
    request = body.get("request")
    keys = request.get("keys") if isinstance(request, Mapping) else None
    if keys is None:
        keys = []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise AdapterError("gatekeeper", "$.request.keys", "must be a list of strings")
    if len(keys) > MAX_KEYS:
        raise AdapterError("gatekeeper", "$.request.keys", f"more than {MAX_KEYS} keys")
    return api_version, keys


def check_request_of_key(key: str) -> CheckRequest:
    """The check a key asks for; :class:`ValidationError` names the missing parameter."""
    parsed = parse_qs(key, keep_blank_values=True, strict_parsing=False)
    params: dict[str, Any] = {name: values[-1] for name, values in parsed.items() if values}
    return CheckRequest.from_params(params)


def item_value(answer: Mapping[str, Any]) -> dict[str, Any]:
    rec = answer.get("recommendation")
    return {
        "verdict": answer["verdict"],
        "reasons": [f"{r['rule']} ({r['verdict']}): {r['summary']}" for r in answer["reasons"]],
        "recommended_release": rec["release"] if rec else None,
    }


def provider_response(
    api_version: str,
    keys: list[str],
    answer_for: Callable[[CheckRequest], Mapping[str, Any]],
    system_error: str | None = None,
) -> dict[str, Any]:
    """The ProviderResponse for the keys (``system_error``: none of them can be answered)."""
    response: dict[str, Any] = {"idempotent": False, "items": []}
    if system_error:
        response["systemError"] = system_error
        return {"apiVersion": api_version, "kind": "ProviderResponse", "response": response}
    for key in keys:
        try:
            answer = answer_for(check_request_of_key(key))
        except ValidationError as exc:
            response["items"].append({"key": key, "error": f"bad key: {exc}"})
            continue
        response["items"].append({"key": key, "value": item_value(answer)})
    return {"apiVersion": api_version, "kind": "ProviderResponse", "response": response}

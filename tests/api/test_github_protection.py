"""GitHub custom deployment protection rules against a stub GitHub on 127.0.0.1.

The stub checks what GitHub documents for the calls relsec makes:

* ``POST /app/installations/{id}/access_tokens`` with an App JWT (RS256, issuer = the
  App id, at most 10 minutes) → ``201 {"token", "expires_at"}``;
* ``POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`` with
  ``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version: 2022-11-28``, the
  installation token as a bearer, and a JSON body of one of the two documented shapes:
  ``{environment_name, state: approved|rejected, comment?}`` or
  ``{environment_name, comment}`` → ``204``.

The webhook sent in is the documented ``deployment_protection_rule`` payload (action
``requested``), signed with ``X-Hub-Signature-256`` as GitHub signs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import jwt
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agents.model.timefmt import parse_rfc3339_ms
from streams.api.github import GitHubConfig
from streams.api.server import Api, ApiOptions
from streams.ingest.signatures import sign_github
from tests.api.helpers import SEED_STORY, build_model, load_events

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")
SECRET = b"webhook-secret-for-tests"
APP_ID = "123456"
INSTALLATION = 987654
INSTALLATION_TOKEN = "ghs_installation_token_for_tests"


class StubGitHub:
    """Validates requests as GitHub documents them; records the reviews."""

    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key
        self.reviews: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.tokens_minted = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/app/installations/{id}/access_tokens", self.access_token)
        app.router.add_post(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule", self.review
        )
        return app

    def _common(self, request: web.Request) -> str | None:
        if request.headers.get("Accept") != "application/vnd.github+json":
            return f"Accept is {request.headers.get('Accept')!r}"
        if request.headers.get("X-GitHub-Api-Version") != "2022-11-28":
            return "X-GitHub-Api-Version is missing or wrong"
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return "no bearer token"
        return None

    async def access_token(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is None:
            token = request.headers["Authorization"][len("Bearer ") :]
            try:
                claims = jwt.decode(token, self.public_key, algorithms=["RS256"])
            except jwt.PyJWTError as exc:
                problem = f"bad App JWT: {exc}"
            else:
                if str(claims.get("iss")) != APP_ID:
                    problem = f"JWT issuer {claims.get('iss')!r}"
                elif claims["exp"] - claims["iat"] > 600:
                    problem = "JWT lives longer than 10 minutes"
        if request.match_info["id"] != str(INSTALLATION):
            problem = f"installation {request.match_info['id']}"
        if problem:
            self.problems.append(problem)
            return web.json_response({"message": problem}, status=401)
        self.tokens_minted += 1
        return web.json_response(
            {"token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z"}, status=201
        )

    async def review(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is None and request.headers["Authorization"] != f"Bearer {INSTALLATION_TOKEN}":
            problem = "not the installation token"
        if problem is None and request.content_type != "application/json":
            problem = f"content type {request.content_type}"
        body: Any = None
        if problem is None:
            body = orjson.loads(await request.read())
            problem = review_body_problem(body)
        if problem:
            self.problems.append(problem)
            return web.json_response({"message": problem}, status=422)
        self.reviews.append({"path": request.path, **body})
        return web.Response(status=204)


def review_body_problem(body: Any) -> str | None:
    """GitHub's request body: oneOf review-custom-gates-state-required /
    review-custom-gates-comment-required."""
    if not isinstance(body, dict):
        return "body is not an object"
    if not isinstance(body.get("environment_name"), str):
        return "environment_name is required"
    if "state" in body:
        if set(body) - {"environment_name", "state", "comment"}:
            return f"unexpected keys {sorted(body)}"
        if body["state"] not in ("approved", "rejected"):
            return f"state {body['state']!r}"
        if "comment" in body and not isinstance(body["comment"], str):
            return "comment is not a string"
        return None
    if set(body) != {"environment_name", "comment"} or not isinstance(body["comment"], str):
        return "a review without state needs exactly environment_name and comment"
    return None


def protection_payload(base: str, release: str, action: str | None = None) -> dict[str, Any]:
    deployment_payload: dict[str, Any] = {"release": release}
    if action:
        deployment_payload["action"] = action
    return {
        "action": "requested",
        "environment": "production",
        "event": "workflow_dispatch",
        "deployment_callback_url": (
            f"{base}/repos/acme/checkout-api/actions/runs/23625057533/deployment_protection_rule"
        ),
        "deployment": {
            "id": 4189575565,
            "environment": "production",
            "sha": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
            "ref": "main",
            "task": "deploy",
            "payload": deployment_payload,
        },
        "pull_requests": [],
        "sha": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
        "ref": "main",
        "repository": {
            "id": 1192056896,
            "name": "checkout-api",
            "full_name": "acme/checkout-api",
            "owner": {"login": "acme"},
        },
        "sender": {"login": "oncall-sre", "id": 242828183},
        "installation": {"id": INSTALLATION},
    }


class World:
    def __init__(self, stub: StubGitHub, stub_url: str, relsec: TestClient, api: Api) -> None:  # type: ignore[type-arg]
        self.stub = stub
        self.stub_url = stub_url
        self.relsec = relsec
        self.api = api

    async def deliver(
        self, payload: Any, sign: bool = True, event: str = "deployment_protection_rule"
    ) -> Any:
        body = orjson.dumps(payload)
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": "d-1",
            "Content-Type": "application/json",
        }
        if sign:
            headers["X-Hub-Signature-256"] = sign_github(SECRET, body)
        return await self.relsec.post(
            "/v1/github/deployment-protection-rule", data=body, headers=headers
        )

    async def wait_reviews(self, n: int) -> list[dict[str, Any]]:
        for _ in range(100):
            if len(self.stub.reviews) >= n or self.stub.problems:
                break
            await asyncio.sleep(0.05)
        assert not self.stub.problems, self.stub.problems
        return self.stub.reviews


@pytest_asyncio.fixture
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    stub = StubGitHub(key.public_key())
    stub_server = TestServer(stub.app(), host="127.0.0.1")
    await stub_server.start_server()
    stub_url = str(stub_server.make_url("")).rstrip("/")
    caught_up = getattr(request, "param", True)
    built = build_model(load_events(SEED_STORY), SEED_NOW, caught_up=caught_up)
    config = GitHubConfig(
        webhook_secret=SECRET, api_url=stub_url, app_id=APP_ID, private_key=pem, wait_s=0.5
    )
    api = Api(built.model, ApiOptions(github=config))
    relsec: TestClient = TestClient(TestServer(api.app()))  # type: ignore[type-arg]
    await relsec.start_server()
    try:
        yield World(stub, stub_url, relsec, api)
    finally:
        await relsec.close()
        await stub_server.close()


@pytest.mark.asyncio
async def test_a_rollback_to_the_flagged_release_is_rejected_with_the_reasons(world: World) -> None:
    resp = await world.deliver(protection_payload(world.stub_url, "2.7.0", "rollback"))
    assert resp.status == 202
    [review] = await world.wait_reviews(1)
    assert (
        review["path"]
        == "/repos/acme/checkout-api/actions/runs/23625057533/deployment_protection_rule"
    )
    assert review["environment_name"] == "production"
    assert review["state"] == "rejected"
    assert "DENY: rollback of checkout-api production to 2.7.0" in review["comment"]
    assert "CVE-2026-20417" in review["comment"]
    assert world.stub.tokens_minted == 1
    [record] = world.api.reviews
    assert record["verdict"] == "deny" and record["status"] == 204


@pytest.mark.asyncio
async def test_warn_approves_with_the_warning_and_allow_approves(world: World) -> None:
    await world.deliver(protection_payload(world.stub_url, "2.8.0"))
    await world.deliver(protection_payload(world.stub_url, "2.9.0"))
    reviews = await world.wait_reviews(2)
    by_verdict = {r["comment"].split(":")[0].split()[-1]: r for r in reviews}
    assert by_verdict["WARN"]["state"] == "approved"
    assert "redeploy-of-rolled-back-release" in by_verdict["WARN"]["comment"]
    assert by_verdict["ALLOW"]["state"] == "approved"
    assert world.stub.tokens_minted == 1  # the installation token is reused


@pytest.mark.asyncio
async def test_unsigned_badly_signed_and_foreign_callbacks_are_refused(world: World) -> None:
    payload = protection_payload(world.stub_url, "2.7.0", "rollback")
    assert (await world.deliver(payload, sign=False)).status == 401
    body = orjson.dumps(payload)
    forged = await world.relsec.post(
        "/v1/github/deployment-protection-rule",
        data=body,
        headers={
            "X-GitHub-Event": "deployment_protection_rule",
            "X-Hub-Signature-256": sign_github(b"another secret", body),
        },
    )
    assert forged.status == 401
    elsewhere = protection_payload("https://attacker.example", "2.7.0")
    resp = await world.deliver(elsewhere)
    assert resp.status == 400
    assert "deployment_callback_url" in (await resp.json())["error"]
    missing = protection_payload(world.stub_url, "2.7.0")
    del missing["environment"]
    resp = await world.deliver(missing)
    assert resp.status == 400 and (await resp.json())["path"] == "$.environment"
    assert (await world.deliver({"zen": "hi"}, event="ping")).status == 200
    await asyncio.sleep(0.2)
    assert world.stub.reviews == []


@pytest.mark.asyncio
@pytest.mark.parametrize("world", [False], indirect=True)
async def test_when_relsec_cannot_answer_the_gate_stays_for_a_person(world: World) -> None:
    await world.deliver(protection_payload(world.stub_url, "2.7.0", "rollback"))
    [review] = await world.wait_reviews(1)
    assert "state" not in review
    assert review["environment_name"] == "production"
    assert "could not answer" in review["comment"]

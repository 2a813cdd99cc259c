"""How fast the timeline page renders a service with a year of events (docs/perf.d/api.md).

A year of one service in the shapes real tools produce:

* three environments (staging 6 deploys a day, canary 3, production 2), a rollback in
  production about once a week during an incident, some failed deploys;
* about two incidents a week (opened, acknowledged, resolved), some with a rollback;
* a scanner report every week on the release running in production: ``--findings``
  findings (default 2 000) raised at one instant on one release, 1 % critical, 9 % high,
  40 % medium, 50 % low, cleared by the report two weeks later.

The events go through the engine (as the worker runs it), the state, the alerts and the
events into the read model, and the page is opened in Debian's Chromium (Playwright).
Measured: the API's timeline answer (build + JSON, bytes), and in the page the time from
its script's start to the drawing done (fetch and JSON parse included: ``total``), to the
second frame after it (laid out and painted: ``painted``, the number that counts), and
the chart's drawing alone (``render``), medians of ``--runs`` page loads; and a range
switch.

    .venv/bin/python -m benchmarks.timeline_bench [--findings 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import urllib.request
from typing import Any

import orjson

from agents.engine import Engine, EngineConfig
from agents.model.events import Deploy, Event, Incident, SecurityFlag, order_key
from agents.model.timefmt import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, parse_rfc3339_ms
from streams.api.history import HistoryStore
from streams.api.readmodel import ReadModel
from streams.api.server import Api, ApiOptions
from streams.api.source import topic_kinds
from streams.settings import Settings
from streams.worker.state_records import StoredState, encode_state

SERVICE = "checkout-api"
START = parse_rfc3339_ms("2025-12-01T00:00:00Z")
ENVS = {"staging": 6, "canary": 3, "production": 2}


def year_of_events(findings: int = 2000, seed: int = 7, days: int = 365) -> list[Event]:
    """One service's year (see the module docstring), sorted by order key."""
    rng = random.Random(seed)
    events: list[Event] = []
    ids = iter(range(10**9))

    def eid(prefix: str) -> str:
        return f"{prefix}-{next(ids)}"

    # A new release every day, promoted staging → canary → production.
    released = [
        (START + day * MS_PER_DAY, f"3.{(day + 1) // 100}.{(day + 1) % 100}")
        for day in range(days)
    ]
    running: dict[str, str] = {}
    for env, per_day in ENVS.items():
        lag = {"staging": 0, "canary": 1, "production": 2}[env]
        for day in range(days):
            for k in range(per_day):
                at = START + day * MS_PER_DAY + (k + 1) * (20 * MS_PER_HOUR // per_day)
                at += rng.randint(0, 30) * MS_PER_MINUTE
                release = released[max(0, day - lag)][1]
                failed = rng.random() < 0.03
                previous = running.get(env)
                events.append(
                    Deploy(
                        eid("dep"), at, "argocd", SERVICE, env, release, previous, "deploy",
                        "failed" if failed else "succeeded", "dev", "ci-bot", "promote", None,
                    )
                )
                if not failed:
                    running[env] = release
    # Incidents twice a week in production; about half lead to a rollback.
    for week in range(days // 7):
        for n in range(2):
            opened = START + week * 7 * MS_PER_DAY + (1 + 3 * n) * MS_PER_DAY + 10 * MS_PER_HOUR
            incident_id = f"INC-{week}-{n}"
            sev = rng.choice(["sev1", "sev2", "sev2", "sev3"])
            for status, offset in (("opened", 0), ("acknowledged", 5), ("resolved", 95)):
                events.append(
                    Incident(
                        eid("inc"), opened + offset * MS_PER_MINUTE, "pagerduty", SERVICE,
                        "production", incident_id, status, sev, "checkout errors above 2%",
                    )
                )
            if n == 0:
                day = (opened - START) // MS_PER_DAY
                back = released[max(0, day - 4)][1]
                events.append(
                    Deploy(
                        eid("dep"), opened + 30 * MS_PER_MINUTE, "argocd", SERVICE, "production",
                        back, None, "rollback", "succeeded", "sre", "oncall", "restore checkout",
                        incident_id,
                    )
                )
    # A scanner report every week on the release of two days before: thousands of findings.
    severities = ["critical"] * 1 + ["high"] * 9 + ["medium"] * 40 + ["low"] * 50
    for week in range(days // 7):
        at = START + week * 7 * MS_PER_DAY + 3 * MS_PER_DAY + 6 * MS_PER_HOUR
        day = (at - START) // MS_PER_DAY
        release = released[max(0, day - 2)][1]
        fixed = released[min(len(released) - 1, day + 10)][1]
        cleared_at = at + 14 * MS_PER_DAY
        for i in range(findings):
            flag_id = f"CVE-2026-{week:02d}{i:04d}"
            sev = severities[i % len(severities)]
            common = (SERVICE, flag_id, release)
            events.append(
                SecurityFlag(
                    eid("scan"), at, "trivy", *common, "raised", sev, "a finding", (flag_id,),
                    fixed,
                )
            )
            if cleared_at < START + days * MS_PER_DAY:
                events.append(
                    SecurityFlag(
                        eid("scan"), cleared_at, "trivy", *common, "cleared", sev, "fixed",
                        (flag_id,), fixed,
                    )
                )
    events.sort(key=order_key)
    return events


def year_model(events: list[Event], now_ms: int) -> tuple[ReadModel, int]:
    """The read model the API would hold after the worker processed ``events``."""
    settings = Settings()
    config = EngineConfig(allowed_lateness_ms=settings.allowed_lateness_ms)
    engine = Engine(config)
    model = ReadModel(config, lambda: now_ms, topic_kinds(settings), HistoryStore())
    alerts = 0
    for event in events:
        for alert in engine.process(event, now_ms).alerts:
            model.alerts.put(alert.to_dict())
            alerts += 1
        model.history.add(event)
    for name, service_engine in engine.services.items():
        stored = StoredState({}, service_engine.to_bytes())
        (head,) = encode_state("changelog", name.encode(), stored, "c", 0, 1 << 30)
        model.put_state(name, head.value, 0, 0, now_ms)
    for progress in model.progress.values():
        progress.assign([0])
        progress.at_end(0, 1, now_ms)
    return model, alerts


def measure(findings: int, runs: int) -> dict[str, Any]:
    from tests.api.browser import chromium, served

    t0 = time.perf_counter()
    events = year_of_events(findings)
    now_ms = events[-1].occurred_at_ms + MS_PER_HOUR
    model, alerts = year_model(events, now_ms)
    built_s = time.perf_counter() - t0
    out: dict[str, Any] = {"events": len(events), "alerts": alerts, "model_build_s": built_s}
    with served(Api(model, ApiOptions(port=0))) as url, chromium() as browser:
        api_ms = []
        for _ in range(runs):
            start = time.perf_counter()
            with urllib.request.urlopen(f"{url}/v1/services/{SERVICE}/timeline") as resp:
                body = resp.read()
            api_ms.append((time.perf_counter() - start) * 1000)
        out["api_first_ms"] = api_ms[0]
        out["api_cached_ms_median"] = statistics.median(api_ms[1:] or api_ms)
        out["api_bytes"] = len(body)
        timeline = orjson.loads(body)["timeline"]
        out["flag_spans"] = len(timeline["flags"])
        out["segments"] = sum(len(e["segments"]) for e in timeline["environments"].values())
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        totals, renders, loads, draws, inserts, painted = [], [], [], [], [], []
        for _ in range(runs):
            start = time.perf_counter()
            page.goto(f"{url}/ui/service?name={SERVICE}")
            page.wait_for_selector("body[data-rendered='1']", timeout=60_000)
            loads.append((time.perf_counter() - start) * 1000)
            totals.append(float(page.get_attribute("body", "data-total-ms") or "nan"))
            painted.append(float(page.get_attribute("body", "data-painted-ms") or "nan"))
            renders.append(float(page.get_attribute("body", "data-render-ms") or "nan"))
            draws.append(float(page.get_attribute("body", "data-draw-ms") or "nan"))
            inserts.append(float(page.get_attribute("body", "data-insert-ms") or "nan"))
        out["page_load_ms_median"] = statistics.median(loads)
        out["page_total_ms_median"] = statistics.median(totals)
        out["page_painted_ms_median"] = statistics.median(painted)
        out["page_render_ms_median"] = statistics.median(renders)
        out["page_draw_ms_median"] = statistics.median(draws)
        out["page_insert_ms_median"] = statistics.median(inserts)
        out["svg_elements"] = page.eval_on_selector(
            "#timeline", "e => e.querySelectorAll('*').length"
        )
        switches = []
        for days in ("30", "all", "7", "all"):
            page.click(f"button[data-range='{days}']")
            page.wait_for_function(
                f"document.querySelector('button.active').dataset.range === '{days}'"
            )
            switches.append(float(page.get_attribute("body", "data-render-ms") or "nan"))
        out["range_switch_render_ms_max"] = max(switches)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = measure(args.findings, args.runs)
    for key, value in result.items():
        print(f"{key:28} {value:.1f}" if isinstance(value, float) else f"{key:28} {value}")


if __name__ == "__main__":
    main()

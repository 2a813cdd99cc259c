"""The timeline page and the index in a real headless Chromium, on the seed story.

DOM assertions on what an SRE must see at a glance (the releases over time, deploys and
rollbacks, the incident as a span, the flag as a span on its release, the conflict
alerts, the recommended release) and a screenshot kept under the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

from agents.model.timefmt import parse_rfc3339_ms
from streams.api.server import Api, ApiOptions
from tests.api.browser import chromium, served
from tests.api.helpers import SEED_STORY, build_model, load_events
from tests.engine.factory import deploy, flag, ms

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")


def test_the_seed_story_on_the_timeline_page(tmp_path: Path) -> None:
    events = [
        *load_events(SEED_STORY),
        # A quiet second service: on the index, below the one with conflicts.
        deploy("1.0", ms(hours=1), service="ledger", env="production"),
    ]
    built = build_model(events, SEED_NOW)
    with served(Api(built.model, ApiOptions(port=0))) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(f"{url}/ui/")
        page.wait_for_selector("body[data-rendered='1']", timeout=15_000)
        conflicts = page.eval_on_selector_all(
            "#conflicts tbody tr", "rows => rows.map(r => r.dataset.service)"
        )
        quiet = page.eval_on_selector_all(
            "#quiet tbody tr", "rows => rows.map(r => r.dataset.service)"
        )
        assert conflicts == ["checkout-api"] and quiet == ["ledger"]
        page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

        page.click("#conflicts a")
        page.wait_for_selector("body[data-rendered='1']", timeout=15_000)
        assert page.url.endswith("/ui/service?name=checkout-api")
        env = "g.environment[data-environment='production']"
        segments = page.eval_on_selector_all(
            f"{env} rect.segment", "els => els.map(e => e.dataset.release)"
        )
        assert segments == ["2.7.0", "2.8.0", "2.7.0", "2.8.0"]
        actions = page.eval_on_selector_all(
            f"{env} .deploy-marker", "els => els.map(e => e.dataset.action)"
        )
        assert actions == ["deploy", "deploy", "rollback", "deploy"]
        rollback_event = page.get_attribute(f"{env} .deploy-marker.rollback", "data-event")
        assert rollback_event == "demo-argocd-103"
        incident = page.locator(f"{env} rect.incident-span[data-incident='INC-4711']")
        assert incident.count() == 1
        box = incident.bounding_box()
        assert box is not None and box["width"] > 3  # a span, not a point
        flag_span = page.locator("g.release-row[data-release='2.7.0'] rect.flag-span")
        assert flag_span.count() == 1
        assert flag_span.get_attribute("data-severity") == "critical"
        assert "CVE-2026-20417" in (flag_span.get_attribute("data-flags") or "")
        assert "open" in (flag_span.get_attribute("class") or "")  # never cleared
        alert_rules = " ".join(
            page.eval_on_selector_all(f"{env} .alert-marker", "els => els.map(e => e.dataset.rule)")
        )
        for rule in (
            "flag-raised-on-running-release",
            "rollback-to-flagged-release",
            "redeploy-of-rolled-back-release",
            "release-flip-flop",
        ):
            assert rule in alert_rules
        assert page.locator("#alerts tbody tr").count() == 4
        card = page.locator("#now-production")
        assert card.locator(".running-release").inner_text() == "2.8.0"
        assert "coordinate a roll-forward" in card.inner_text()
        assert "coordinate a roll-forward" in (page.text_content("#rec-production") or "")
        assert "Up to date" in page.inner_text("#freshness")
        shot = tmp_path / "timeline-seed-story.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"timeline screenshot: {shot}")
        assert not errors, errors


def test_a_recommended_release_and_a_narrow_range(tmp_path: Path) -> None:
    events = [
        deploy("1.0", ms(days=1)),
        deploy("1.1", ms(days=2)),
        flag("CVE-2026-7", "1.1", ms(days=3), severity="high", fixed_in="1.2"),
        deploy("1.2", ms(days=4)),
        flag("CVE-2026-8", "1.2", ms(days=5), severity="critical"),
    ]
    built = build_model(events, ms(days=6))
    with served(Api(built.model, ApiOptions(port=0))) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(f"{url}/ui/service?name=payments-api")
        page.wait_for_selector("body[data-rendered='1']", timeout=15_000)
        # 1.2 runs with a critical flag; 1.1 is flagged; 1.0 is clean: the recommendation.
        assert page.inner_text("#now-production .rec-release") == "1.0"
        assert "recommended: 1.0" in (page.text_content("#rec-production") or "")
        page.click("button[data-range='2']")
        page.wait_for_function("document.querySelector('button.active').dataset.range === '2'")
        segments = page.eval_on_selector_all(
            "rect.segment", "els => els.map(e => e.dataset.release)"
        )
        assert segments == ["1.1", "1.2"]  # 1.0 stopped running before the last two days
        page.screenshot(path=str(tmp_path / "timeline-2-days.png"), full_page=True)


def test_a_dense_year_draws_bins_and_grouped_spans() -> None:
    """A year of one service (weekly scanner reports of 200 findings): dense marks are
    binned, flags become a few spans per report, alerts are grouped, nothing errors.
    The timing at full size is the benchmark's (benchmarks/timeline_bench.py)."""
    from benchmarks.timeline_bench import SERVICE, year_model, year_of_events

    events = year_of_events(findings=200)
    model, alerts = year_model(events, events[-1].occurred_at_ms + 3_600_000)
    with served(Api(model, ApiOptions(port=0))) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/ui/service?name={SERVICE}")
        page.wait_for_selector("body[data-rendered='1']", timeout=60_000)
        assert not errors, errors
        assert page.locator("rect.segment.busy").count() > 0  # sub-2-px segments merged
        flag_counts = page.eval_on_selector_all(
            "#timeline rect.flag-span", "els => els.map(e => Number(e.dataset.count))"
        )
        # 52 reports of 4 severities each; the 40 most recently active releases are drawn.
        assert len(flag_counts) <= 52 * 4 and max(flag_counts) == 100  # 50 % low of 200
        drawn = sum(
            page.eval_on_selector_all(
                "#timeline path.alert-marker", "els => els.map(e => Number(e.dataset.count))"
            )
        )
        active = len(model.alerts.active(SERVICE))
        assert alerts >= active > 0
        assert drawn == active  # every active alert is counted in a marker
        marks = page.eval_on_selector("#timeline", "e => e.querySelectorAll('*').length")
        assert marks < 20_000, marks
        print(
            f"year of {len(events)} events: render {page.get_attribute('body', 'data-render-ms')}"
            f" ms, page total {page.get_attribute('body', 'data-total-ms')} ms, {marks} SVG marks"
        )

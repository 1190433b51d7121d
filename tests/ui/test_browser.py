"""The UI in a real browser against real gateway, orchestrator and runner processes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.browser import chromium, log_in, open_page, serious_violations
from tests.ui.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.timeout(240)


def test_a_posted_event_makes_its_run_appear_in_the_open_list_and_its_page_shows_the_log(
    stack: Stack,
) -> None:
    name = f"browser-{uuid.uuid4().hex[:6]}"
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui/runs")
        page.evaluate("window.__stillTheSamePage = true")
        expect(page.locator("#run-rows")).to_be_visible()
        page.wait_for_function("document.querySelector('[sse-connect]') !== null")
        stack.post_event(f"ev-{name}", name)
        run = stack.wait_run(lambda r: r["parameters"].get("name") == name, f"for {name}")
        row = page.locator(f"#run-rows a[href='/ui/runs/{run['id']}']")
        expect(row).to_be_visible(timeout=30_000)
        assert page.evaluate("window.__stillTheSamePage") is True  # no reload happened
        row.click()
        expect(page.locator("#logs")).to_contain_text(f"Hello, {name}!", timeout=30_000)
        expect(page.locator("#run-state")).to_contain_text("Completed", timeout=30_000)
        assert console.errors == []


def test_the_events_page_shows_new_events_live_and_an_event_shows_its_runs(stack: Stack) -> None:
    name = f"events-{uuid.uuid4().hex[:6]}"
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui/events?pattern=com.example.*")
        page.wait_for_function("document.querySelector('[sse-connect]') !== null")
        page.evaluate("window.__stillTheSamePage = true")
        page.wait_for_timeout(500)  # the stream is open before the event is sent
        stack.post_event(f"ev-{name}", name)
        link = page.locator(f"#event-rows tr:has-text('ev-{name}') a")
        expect(link).to_be_visible(timeout=30_000)
        assert page.evaluate("window.__stillTheSamePage") is True
        run = stack.wait_run(lambda r: r["parameters"].get("name") == name, f"for {name}")
        link.click()
        expect(page.locator("pre.code")).to_contain_text(f'"name": "{name}"')
        expect(page.locator(f"a[href='/ui/runs/{run['id']}']")).to_be_visible()
        assert console.errors == []


def test_a_run_page_shows_its_states_task_runs_artifacts_and_the_runs_it_triggered(
    stack: Stack,
) -> None:
    name = f"chain-{uuid.uuid4().hex[:6]}"
    stack.post_event(f"ev-{name}", name)
    run = stack.wait_run(lambda r: r["parameters"].get("name") == name
                         and r["state"]["name"] == "Completed", f"completed for {name}")
    chained = stack.wait_run(lambda r: (r.get("triggering_event") or {}).get("type")
                             == "flowbus.flow-run.Completed" and r["state"]["name"] == "Completed"
                             and r["created"] > run["created"], "chained", deployment="after-hello")
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, f"/ui/runs/{run['id']}")
        timeline = page.locator("#state-timeline li")
        expect(timeline.first).to_contain_text("Scheduled")
        expect(timeline.last).to_contain_text("Completed")
        assert "Running" in page.locator("#state-timeline").inner_text()
        bar = page.locator("#task-gantt .gantt-row:has-text('shout') rect.state-completed")
        expect(bar).to_have_count(1)
        link = page.locator(f"#artifacts a[href='https://example.com/{name}']")
        expect(link).to_have_text(name)
        expect(page.locator("#artifacts td").first).to_have_text(name)
        page.locator(f"#triggered-runs a[href='/ui/runs/{chained['id']}']").click()
        expect(page.locator("h1")).to_have_text(chained["name"])
        expect(page.locator("#triggered-runs")).to_have_count(0)
        assert console.errors == []


def test_the_dashboard_shows_failing_deployments_and_event_to_run_latency(stack: Stack) -> None:
    reason = f"boom-{uuid.uuid4().hex[:6]}"
    stack.post_event(f"ev-{reason}", reason, type="com.example.boom")
    failed = stack.wait_run(lambda r: r["parameters"].get("reason") == reason
                            and r["state"]["name"] == "Failed", "failed", deployment="boom")
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui?window=1h")
        row = page.locator("#failing tr:has(a[href='/ui/deployments/boom'])")
        expect(row).to_be_visible()
        expect(row.locator(f"a[href='/ui/runs/{failed['id']}']")).to_be_visible()
        expect(page.locator("#latency dd").first).to_contain_text(" s")
        page.click("nav.windows a:has-text('all runs')")
        page.wait_for_url("**/ui?window=all")
        expect(page.locator("#tile-total")).to_have_text(str(len(stack.runs())))
        assert console.errors == []


def test_an_event_page_shows_the_automation_firings_it_caused(stack: Stack) -> None:
    name = f"firing-{uuid.uuid4().hex[:6]}"
    status, made = stack.api("POST", "/api/v1/automations", {
        "name": name, "trigger": {"expect": [f"com.example.{name}"]},
        "actions": [{"type": "do-nothing"}]})
    assert status == 201, made
    fired: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while not fired and time.monotonic() < deadline:  # until the orchestrator has loaded it
        event_id = f"ev-{uuid.uuid4().hex[:8]}"
        stack.post_event(event_id, name, type=f"com.example.{name}")
        for _ in range(15):
            status, body = stack.api("GET", "/api/v1/events?pattern=flowbus.automation.*&limit=1000")
            assert status == 200, body
            fired = next((e for e in body["items"]
                          if (e["data"] or {}).get("triggering_event", {}).get("id") == event_id), {})
            if fired:
                break
            time.sleep(0.3)
    assert fired, "the automation never fired"
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, f"/ui/events?pattern=com.example.{name}")
        page.locator(f"#event-rows tr:has-text('{event_id}') a").click()
        rows = page.locator(f"#firings tr:has-text('{name}')")
        expect(rows.first).to_contain_text("triggered")
        expect(page.locator("#firings")).to_contain_text("action do-nothing #0 done")
        assert console.errors == []


def test_the_run_form_refuses_a_wrong_parameter_type_and_creates_nothing(stack: Stack) -> None:
    before = len(stack.runs(deployment="nap"))
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui/deployments/nap")
        page.fill("#p-seconds", "soon")
        page.click("form.run-form button[type=submit]")
        expect(page.locator(".field-error")).to_contain_text("must be a whole number")
        assert page.url.endswith("/ui/deployments/nap")
        assert console.errors == []
    assert len(stack.runs(deployment="nap")) == before


def test_a_run_started_from_the_form_can_be_cancelled(stack: Stack) -> None:
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui/deployments/nap")
        page.fill("#p-seconds", "120")
        page.click("form.run-form button[type=submit]")
        page.wait_for_url("**/ui/runs/*")
        run_id = page.url.rsplit("/", 1)[1]
        stack.wait_run(lambda r: r["id"] == run_id and r["state"]["name"] == "Running", "running",
                       deployment="nap")
        page.goto(stack.url + "/ui/runners")
        held = page.locator(f"#runners table[data-pool='default'] tr:has(a[href='/ui/runs/{run_id}'])")
        expect(held).to_contain_text("live")
        expect(held.locator("td").first).to_have_text(stack.runner_id())
        page.goto(stack.url + f"/ui/runs/{run_id}")
        page.click("button:has-text('Cancel')")
        page.wait_for_url(f"**/ui/runs/{run_id}")
        expect(page.locator("#run-state")).to_contain_text("Cancel")
        assert console.errors == []
    final = stack.wait_run(lambda r: r["id"] == run_id and r["state"]["name"] == "Cancelled",
                           "cancelled", deployment="nap")
    assert final["state"]["type"] == "CANCELLED"


def test_the_runners_page_lists_the_idle_runner_and_shows_a_run_it_takes_without_reload(
    stack: Stack,
) -> None:
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, stack.keys["reader"], "/ui/runners")
        row = page.locator(f"#runners table[data-pool='default'] tr[data-runner='{stack.runner_id()}']")
        expect(row).to_contain_text("live")
        expect(row.locator(".slots")).to_contain_text("/ 2")
        page.evaluate("window.__stillTheSamePage = true")
        status, outcome = stack.api("POST", "/api/v1/deployments/nap/runs",
                                    {"parameters": {"seconds": 60, "label": "watched"}})
        assert status == 202, outcome
        run_id = outcome["flow_run_id"]
        try:
            expect(row.locator(f"a[href='/ui/runs/{run_id}']")).to_be_visible(timeout=30_000)
            assert page.evaluate("window.__stillTheSamePage") is True  # no reload happened
        finally:
            stack.api("POST", f"/api/v1/flow-runs/{run_id}/cancel")
        assert console.errors == []
    stack.wait_run(lambda r: r["id"] == run_id and r["state"]["name"] == "Cancelled",
                   "cancelled", deployment="nap")


def test_a_read_only_key_sees_no_action(stack: Stack) -> None:
    stack.post_event(f"ev-ro-{uuid.uuid4().hex[:6]}", "reader")
    run = stack.wait_run(lambda r: r["parameters"].get("name") == "reader", "for reader")
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, stack.keys["reader"], f"/ui/runs/{run['id']}")
        expect(page.locator("h1")).to_be_visible()
        assert page.locator("form[method=post] button:has-text('Rerun')").count() == 0
        assert page.locator("button:has-text('Cancel')").count() == 0
        page.goto(stack.url + "/ui/deployments/nap")
        assert page.locator("form.run-form").count() == 0
        assert page.locator("button:has-text('Pause')").count() == 0
        expect(page.locator(".who")).to_contain_text("read-only")
        assert console.errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_console_errors_and_no_serious_accessibility_violations(
    stack: Stack, scheme: str,
) -> None:
    stack.post_event(f"ev-a11y-{uuid.uuid4().hex[:6]}", "a11y")
    run = stack.wait_run(lambda r: r["parameters"].get("name") == "a11y", "for a11y")
    with chromium() as browser:
        page, console = open_page(browser, scheme=scheme)
        page.goto(stack.url + "/ui/login")
        assert serious_violations(page) == []
        log_in(page, stack.url, ADMIN_KEY)
        for path in ("/ui", "/ui/runs", f"/ui/runs/{run['id']}", "/ui/deployments", "/ui/events", "/ui/automations",
                     "/ui/deployments/nap", "/ui/runs?state=Completed", "/ui/sources", "/ui/runners",
                     "/ui/task-runs", "/ui/assets"):
            page.goto(stack.url + path)
            page.wait_for_load_state("load")
            assert serious_violations(page) == [], path
        assert console.errors == []


def test_a_paused_run_is_resumed_from_its_page_with_input_checked_against_its_schema(
    stack: Stack,
) -> None:
    status, outcome = stack.api("POST", "/api/v1/deployments/approve/runs", {})
    assert status == 202, outcome
    run_id = outcome["flow_run_id"]
    stack.wait_run(lambda r: r["id"] == run_id and r["state"]["name"] == "Paused", "paused",
                   deployment="approve")
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, stack.keys["reader"], f"/ui/runs/{run_id}")
        expect(page.locator("#resume")).to_contain_text("waits for input")
        assert page.locator("form.resume-form").count() == 0  # read-only: no form
        page.context.clear_cookies()
        log_in(page, stack.url, ADMIN_KEY, f"/ui/runs/{run_id}")
        form = page.locator("form.resume-form")
        expect(form).to_be_visible(timeout=30_000)  # shown once the body saved its schema
        expect(page.locator("#resume")).to_contain_text("Ship it?")
        expect(page.locator("#p-copies")).to_have_value("1")
        assert serious_violations(page) == []
        # The browser's check: not a whole number, nothing is sent.
        page.fill("#p-reviewer", "ada")
        page.fill("#p-copies", "many")
        form.locator("button[type=submit]").click()
        expect(page.locator(".field-error")).to_contain_text("must be a whole number")
        # The server's check against the saved schema (copies >= 1): refused, shown inline.
        page.fill("#p-copies", "0")
        form.locator("button[type=submit]").click()
        page.wait_for_url(f"**/ui/runs/{run_id}/resume")
        expect(page.locator("#resume-refusal")).to_contain_text("copies")
        expect(page.locator("#p-reviewer")).to_have_value("ada")  # what was typed is kept
        assert serious_violations(page) == []
        status, record = stack.api("GET", f"/api/v1/flow-runs/{run_id}")
        assert status == 200 and record["state"]["name"] == "Paused", record
        page.check("#p-approved")
        page.fill("#p-copies", "2")
        page.locator("form.resume-form button[type=submit]").click()
        page.wait_for_url(f"**/ui/runs/{run_id}")
        stack.wait_run(lambda r: r["id"] == run_id and r["state"]["name"] == "Completed",
                       "completed", deployment="approve")
        page.reload()
        expect(page.locator("#run-state")).to_contain_text("Completed")
        result = page.locator("section.card:has(h2:has-text('Result')) pre")
        expect(result).to_contain_text("v1: approved=True by ada x2")
        assert page.locator("#resume").count() == 0
        token = page.locator("meta[name=csrf-token]").get_attribute("content")
        again = page.request.post(f"{stack.url}/ui/runs/{run_id}/resume", form={"csrf": token or ""})
        assert again.status == 409 and "not Paused" in again.text()
        # Chromium notes the refused form's 422 document response; nothing else is reported.
        refused = [e for e in console.errors if "status of 422" in e and e.endswith("/resume")]
        assert len(refused) == 1 and console.errors == refused, console.errors


def test_the_task_runs_and_assets_pages_show_what_a_flow_queued_and_materialised(
    stack: Stack,
) -> None:
    status, outcome = stack.api("POST", "/api/v1/deployments/lake/runs?wait=60", {})
    assert status == 200 and outcome["state"]["name"] == "Completed", outcome
    task_run_id = outcome["result"]
    deadline = time.monotonic() + 60
    asset: dict[str, Any] = {}
    while not asset and time.monotonic() < deadline:  # the orchestrator folds the events in
        status, body = stack.api("GET", "/api/v1/assets?prefix=s3://lake/ui-report")
        assert status == 200, body
        asset = next(iter(body["items"]), {})
        time.sleep(0.3)
    assert (asset.get("latest_materialization") or {}).get("status") == "succeeded", asset
    with chromium() as browser:
        page, console = open_page(browser)
        log_in(page, stack.url, stack.keys["reader"], "/ui/task-runs?state=Scheduled&task=crunch")
        row = page.locator(f"#task-runs tr:has(td[title='{task_run_id}'])")
        expect(row).to_contain_text("crunch")
        expect(row).to_contain_text("Scheduled")
        expect(row).to_contain_text('"n": 3')
        page.click("nav a:has-text('Assets')")
        page.wait_for_url("**/ui/assets")
        row = page.locator("#assets tr:has-text('s3://lake/ui-report.csv')")
        expect(row).to_contain_text("succeeded")
        expect(row).to_contain_text("by pandas")
        expect(row).to_contain_text("postgres://shop/orders")
        row.locator("a:has-text('run')").click()
        expect(page.locator("h1")).to_have_count(1)
        assert page.url.endswith(f"/ui/runs/{outcome['flow_run_id']}")
        page.goto(stack.url + "/ui/assets?prefix=gs://nothing/")
        expect(page.locator("#assets")).to_contain_text("No asset matches this prefix")
        assert console.errors == []


def test_an_expired_session_sends_the_live_list_to_the_login_page_not_into_the_table(
    stack: Stack,
) -> None:
    name = f"expired-{uuid.uuid4().hex[:6]}"
    with chromium() as browser:
        page, _ = open_page(browser)
        log_in(page, stack.url, ADMIN_KEY, "/ui/runs")
        page.wait_for_function("document.querySelector('[sse-connect]') !== null")
        page.wait_for_timeout(500)  # the live stream is open before the session goes
        page.context.clear_cookies(name="flowbus_session")
        # A run appears: the open stream says so and htmx asks for the rows, without a session.
        stack.post_event(f"ev-{name}", name)
        page.wait_for_url("**/ui/login?next=%2Fui%2Fruns", timeout=30_000)
        expect(page.locator("#api_key")).to_be_visible()
        assert page.locator("#run-rows").count() == 0
        assert page.locator("form").count() == 1  # the login form is the page, not a row
        page.fill("#api_key", ADMIN_KEY)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/runs")
        expect(page.locator("#run-rows")).to_be_visible()

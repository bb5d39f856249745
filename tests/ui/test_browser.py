"""The practitioner UI in Debian's Chromium against a real `labrec serve` and its sandbox lab.

Elements are found by label and role, as a person finds them. Screenshots of every page at
desktop and phone widths go to a folder under the test run's temporary directory; the clicks and
seconds from "New recommendation" to a placed order are printed (prefix UI-ORDER-METRICS) and
written to ordering-metrics.json in that folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.processes import Process
from tests.ui.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    EMAIL,
    PASSWORD,
    Actions,
    Screenshots,
    Stopwatch,
    labrec_server,
    require_chromium,
)

pytestmark = pytest.mark.browser

PATIENT = {
    "reference": "ZZCANARY-REF-7731",
    "given_name": "ZZCANARYGIVEN",
    "family_name": "ZZCANARYFAMILY",
    "birth_date": "1971-03-09",
}
LIVE = re.compile(r"Submitted|Received by the lab|In progress")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nUI-SCREENSHOTS: {folder}")
    return Screenshots(folder)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Process]]:
    require_chromium()
    with labrec_server(tmp_path_factory.mktemp("ui-server")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: tuple[str, Process]) -> Iterator[Any]:
    """A fresh browser context (no cookies); script errors and CSP violations fail the test.

    Chromium also logs every 4xx document as a console error; those are expected (a wrong
    password is a 401 page) and left out.
    """
    base, _ = server
    context = browser.new_context(base_url=base, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"browser console errors: {errors}"


def _sign_in(page: Any, password: str = PASSWORD) -> None:
    page.goto("/ui/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_refuses_a_wrong_password_and_accepts_the_right_one(
    page: Any, shots: Screenshots
) -> None:
    from playwright.sync_api import expect

    page.goto("/ui/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shots.take(page, "01-sign-in")
    _sign_in(page, "not the password")
    expect(page.get_by_role("alert")).to_contain_text("The email or password is wrong")
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    shots.take(page, "02-sign-in-wrong-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="New recommendation")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_ketamine_recommendation_to_a_submitted_order_then_cancel(
    page: Any, shots: Screenshots
) -> None:
    from playwright.sync_api import expect

    _sign_in(page)
    expect(page.get_by_role("heading", name="New recommendation")).to_be_visible()
    actions, watch = Actions(), Stopwatch()

    watch.start()  # from opening "New recommendation" ...
    actions.click(page.get_by_role("link", name="New recommendation"))
    expect(page.get_by_label("Therapy")).to_have_value("ketamine")
    actions.select(page.get_by_label("Route"), label="Intravenous (IV)")
    actions.check(page.get_by_label("Female", exact=True))
    actions.type(page.get_by_label("Age in years"), "34")
    actions.type(page.get_by_label("Condition 1"), "F33.2")
    actions.check(page.get_by_label("Gastrointestinal symptoms"))
    actions.check(page.get_by_label("Fatigue"))
    with watch.paused():
        shots.take(page, "03-new-recommendation")
    actions.click(page.get_by_role("button", name="Suggest panels"))

    expect(page.get_by_role("heading", name="Suggested panels")).to_be_visible()
    expect(page.get_by_role("heading", name="Safety monitoring")).to_be_visible()
    expect(page.get_by_role("heading", name="Left out, and why")).to_be_visible()
    expect(page.get_by_label("Hepatic function panel (LFT)", exact=True)).to_be_checked()
    complementary = page.get_by_role("region", name="Complementary (association-level evidence)")
    expect(complementary.get_by_role("checkbox").first).to_be_visible()
    for box in complementary.get_by_role("checkbox").all():
        expect(box).not_to_be_checked()  # opt-in
    # Evidence is folded: no citation link shows until its panel's "Why" is opened.
    citations = page.get_by_role("link", name=re.compile(r"^(doi:|PMID )"))
    expect(citations.first).to_be_hidden()
    with watch.paused():
        height = page.evaluate("document.body.scrollHeight")
        form_top = page.get_by_role("heading", name="Order the selected panels").bounding_box()
        print(f"\nUI-RESULT-PAGE: scrollHeight={height}px order form at y={form_top['y']:.0f}px")
        # The order form is within four screens at 1280x800 (the unfolded page was ~7,000 px).
        assert form_top["y"] < 4 * DESKTOP["height"], form_top
        hepatic = page.get_by_role("listitem").filter(
            has=page.get_by_label("Hepatic function panel (LFT)", exact=True)
        )
        hepatic.get_by_text(re.compile(r"^Why")).click()
        expect(hepatic.get_by_role("link", name=re.compile(r"^(doi:|PMID )")).first).to_be_visible()
    expect(page.get_by_label("Practitioner name")).to_have_value("Dr Robin Test")
    actions.type(page.get_by_label("Patient reference"), PATIENT["reference"])
    actions.type(page.get_by_label("Given name"), PATIENT["given_name"])
    actions.type(page.get_by_label("Family name"), PATIENT["family_name"])
    actions.type(page.get_by_label("Date of birth"), PATIENT["birth_date"])
    with watch.paused():
        shots.take(page, "04-recommendation")
    actions.click(page.get_by_role("button", name="Review order"))

    expect(page.get_by_role("heading", name="Review the order")).to_be_visible()
    expect(page.get_by_text("Price total")).to_be_visible()
    with watch.paused():
        shots.take(page, "05-review")
    actions.clicks += 1  # a double-click, as an impatient person does: still one order
    page.get_by_role("button", name="Place order").dblclick()
    expect(page.get_by_role("status")).to_contain_text("Order placed")
    watch.stop()  # ... to a placed order

    metrics = {
        "clicks": actions.clicks,
        "typed_fields": actions.typed_fields,
        "seconds": round(watch.seconds, 2),
        "path": "New recommendation -> Suggest panels -> Review order -> Place order",
    }
    print(f"\nUI-ORDER-METRICS: {json.dumps(metrics)}")
    (shots.folder / "ordering-metrics.json").write_text(json.dumps(metrics, indent=2))

    live = page.get_by_role("region", name="Live status")
    expect(live).to_contain_text(LIVE, timeout=15_000)  # the sandbox lab accepted it
    seen = re.search(LIVE, live.inner_text())
    print(f"UI-FIRST-LAB-STATUS-SEEN: {seen.group(0) if seen else '?'}")
    expect(live).not_to_contain_text("not assigned yet")  # the lab's id is shown
    expect(live).to_contain_text("accepted")  # attempt history
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel order").click()
    expect(live).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    shots.take(page, "06-order-cancelled")

    page.get_by_role("link", name="Orders").click()
    expect(page.get_by_role("link", name=re.compile(r"^Order "))).to_have_count(1)
    page.get_by_label("Status").select_option(label="Cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name=PATIENT["reference"])).to_be_visible()
    shots.take(page, "07-orders")


def test_a_safety_gate_cannot_be_missed_on_the_result_and_review_pages(
    page: Any, shots: Screenshots
) -> None:
    """Valproate with liver disease: a critical gate, shown as an alert in the first screen."""
    from playwright.sync_api import expect

    _sign_in(page)
    page.get_by_label("Therapy").select_option(value="valproate")
    page.get_by_label("Route").select_option(label="Oral")
    page.get_by_label("Female", exact=True).check()
    page.get_by_label("Age in years").fill("30")
    page.get_by_label("Pregnancy possible").select_option(label="Yes")
    page.get_by_label("Liver disease").check()
    page.get_by_role("button", name="Suggest panels").click()

    gate = page.get_by_role("alert")
    expect(gate).to_have_count(1)
    expect(gate).to_contain_text("do not dose without specialist review")
    expect(gate).to_be_in_viewport()  # at the top, before any panel
    expect(page.get_by_role("heading", name="Check before dosing")).to_be_visible()
    shots.take(page, "04b-recommendation-safety-gate")
    page.get_by_label("Patient reference").fill(PATIENT["reference"] + "-3")
    page.get_by_label("Given name").fill(PATIENT["given_name"])
    page.get_by_label("Family name").fill(PATIENT["family_name"])
    page.get_by_label("Date of birth").fill(PATIENT["birth_date"])
    page.get_by_role("button", name="Review order").click()

    expect(page.get_by_role("heading", name="Review the order")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("do not dose without specialist review")
    expect(page.get_by_role("alert")).to_be_in_viewport()
    shots.take(page, "05b-review-safety-gate")


def test_more_context_reaches_a_co_medication_gate(page: Any, shots: Screenshots) -> None:
    """An MAOI ticked under "More context" with an SSRI/SNRI: the critical gate, at the top."""
    from playwright.sync_api import expect

    _sign_in(page)
    page.get_by_label("Therapy").select_option(value="ssri_snri")
    page.get_by_label("Route").select_option(label="Oral")
    page.get_by_label("Female", exact=True).check()
    page.get_by_label("Known pregnancy").check()
    maoi = page.get_by_label("Monoamine oxidase inhibitor (MAOI)", exact=True)
    expect(maoi).to_be_hidden()  # folded: the form stays compact
    page.get_by_text("More context").click()
    maoi.check()
    page.get_by_label("Monoamine oxidase inhibitor (MAOI): started").fill("2026-11-01")
    shots.take(page, "01b-new-recommendation-more-context")
    page.get_by_role("button", name="Suggest panels").click()

    gate = page.get_by_role("alert")
    expect(gate).to_have_count(1)
    expect(gate).to_contain_text("serotonin syndrome")
    expect(gate).to_be_in_viewport()


def test_order_status_updates_live_without_reload(page: Any, shots: Screenshots) -> None:
    """The order page polls its status fragment: queued turns into a lab status by itself."""
    from playwright.sync_api import expect

    _sign_in(page)
    page.get_by_label("Route").select_option(label="Intravenous (IV)")
    page.get_by_label("Male", exact=True).check()
    page.get_by_role("button", name="Suggest panels").click()
    page.get_by_label("Patient reference").fill(PATIENT["reference"] + "-2")
    page.get_by_label("Given name").fill(PATIENT["given_name"])
    page.get_by_label("Family name").fill(PATIENT["family_name"])
    page.get_by_label("Date of birth").fill(PATIENT["birth_date"])
    page.get_by_role("button", name="Review order").click()
    page.get_by_role("button", name="Place order").click()
    live = page.get_by_role("region", name="Live status")
    expect(live).to_contain_text(re.compile(r"Queued|" + LIVE.pattern))
    page.evaluate("window.labrecTestMarker = 'still the same document'")
    later = re.compile(r"Received by the lab|In progress|Resulted")
    expect(live).to_contain_text(later, timeout=15_000)
    # No reload happened: the status fragment was swapped into the same document.
    assert page.evaluate("window.labrecTestMarker") == "still the same document"
    shots.take(page, "08-order-live-status")


def test_catalog_search_and_panel_detail(page: Any, shots: Screenshots) -> None:
    from playwright.sync_api import expect

    _sign_in(page)
    page.get_by_role("link", name="Catalog").click()
    page.get_by_label("Search panels").fill("hepatic")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status")).to_contain_text("found")
    expect(page.get_by_role("link", name="Hepatic function panel (LFT)")).to_be_visible()
    shots.take(page, "09-catalog-search")
    page.get_by_label("Search panels").fill("")
    page.get_by_label("Tier").select_option(label="Complementary (association-level evidence)")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Hepatic function panel (LFT)")).to_have_count(0)
    page.get_by_label("Tier").select_option(label="Safety monitoring")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Hepatic function panel (LFT)").click()
    expect(page.get_by_role("heading", name="Hepatic function panel (LFT)")).to_be_visible()
    expect(page.get_by_role("heading", name="Order codes")).to_be_visible()
    expect(page.get_by_role("cell", name="24325-3")).to_be_visible()
    shots.take(page, "10-panel-detail")
    page.goto("/ui/no-such-page")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    shots.take(page, "11-not-found")
    page.goto("/ui/logout")
    shots.take(page, "12-sign-out")
    page.get_by_role("button", name="Sign out now").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto("/ui/orders")  # the session is gone on the server
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_screenshots_written_and_no_patient_data_in_server_logs(
    server: tuple[str, Process], shots: Screenshots
) -> None:
    """Runs last: every screenshot is a non-empty PNG; the server log never saw the patient."""
    _, process = server
    log = process.output()
    assert '"logger": "labrec.access"' in log  # the server did log the whole flow
    for name, marker in PATIENT.items():
        assert marker not in log, f"patient {name} leaked into the server log"
    pngs = sorted(shots.folder.glob("*.png"))
    assert pngs, "no screenshots were written"
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000, png
    print(f"\nUI-SCREENSHOTS: {len(pngs)} files in {shots.folder}")

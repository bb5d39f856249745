"""Safety gates and honest pre-selection on the practitioner's pages (MAPPING.md v2).

A critical advisory is an alert banner above every panel on the result page and again on the
order review page; warning advisories sit right under it; only the recommendation's
``preselected`` panels are ticked when the page opens, complementary panels never.
"""

from __future__ import annotations

import html
import re
from typing import Any

from service.persistence.models import StoredRecommendation
from tests.ui.helpers import order_form
from tests.ui.test_pages import CHECKED, _recommendation, _signed_in

#: Valproate with liver disease is contraindicated (critical); pregnancy possible is a warning.
GATED = {
    "therapy": "valproate",
    "route": "oral",
    "condition": ["F31.81", "", ""],
    "sex": "female",
    "age": "30",
    "pregnancy": "yes",
    "finding": ["liver_disease"],
}
_SECTION = re.compile(r'<section class="gate gate-(critical|warning)"[^>]*>(.*?)</section>', re.S)


async def _stored(container: Any, location: str) -> dict[str, Any]:
    async with container.sessions() as session:
        stored = await session.get(StoredRecommendation, location.rsplit("/", 1)[1])
        assert stored is not None
        return stored.result


def _texts(result: dict[str, Any], severity: str) -> list[str]:
    return [html.escape(a["text"]) for a in result["advisories"] if a["severity"] == severity]


def _gates(page: str) -> dict[str, tuple[str, str]]:
    """severity -> (opening tag, inner HTML) of each gate banner."""
    found = {}
    for match in _SECTION.finditer(page):
        tag = page[match.start() : page.index(">", match.start()) + 1]
        found[match.group(1)] = (tag, match.group(2))
    return found


async def test_critical_gate_is_an_alert_above_the_panels_and_repeated_on_review(ui) -> None:
    client, container, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf, **GATED)
    result = await _stored(container, location)
    critical, warning = _texts(result, "critical"), _texts(result, "warning")
    routine = _texts(result, "info")
    assert critical and warning and routine

    page = (await client.get(location)).text
    gates = _gates(page)
    tag, inner = gates["critical"]
    assert 'role="alert"' in tag
    assert all(text in inner for text in critical)
    assert page.index(inner) < page.index('id="tier-safety"')  # before any panel
    assert 'role="alert"' not in gates["warning"][0]  # one alert, the one that matters
    assert all(text in gates["warning"][1] for text in warning)
    assert page.index("gate-critical") < page.index("gate-warning") < page.index("advisories-h")
    assert all(text not in inner for text in warning + routine)

    review = await client.post(f"{location}/review", data=order_form(csrf, CHECKED.findall(page)))
    assert review.status_code == 200, review.text
    gates = _gates(review.text)
    assert 'role="alert"' in gates["critical"][0]
    assert all(text in gates["critical"][1] for text in critical)
    assert all(text in gates["warning"][1] for text in warning)
    assert review.text.index("gate-critical") < review.text.index('id="panels-h"')
    assert not any(text in review.text for text in routine)  # routine advice stays behind


async def test_no_gate_no_alert(ui) -> None:
    client, container, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)  # ketamine, depression: no gate, no warning
    result = await _stored(container, location)
    assert {a["severity"] for a in result["advisories"]} == {"info"}
    page = (await client.get(location)).text
    assert 'role="alert"' not in page and not _gates(page)
    assert 'id="advisories-h"' in page


async def test_only_preselected_panels_are_ticked_and_complementary_ones_never(ui) -> None:
    client, container, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)  # GI symptoms and fatigue: complementary too
    result = await _stored(container, location)
    preselected = {s["panel"]["id"] for s in result["suggestions"] if s["preselected"]}
    complementary = {
        s["panel"]["id"] for s in result["suggestions"] if s["panel"]["tier"] == "complementary"
    }
    assert preselected and complementary and len(preselected) < len(result["suggestions"])
    page = (await client.get(location)).text
    assert set(CHECKED.findall(page)) == preselected
    assert not preselected & complementary
    for panel_id in complementary:
        assert f'name="panel" value="{panel_id}">' in page  # offered, unticked

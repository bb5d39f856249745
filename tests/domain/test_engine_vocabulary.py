"""MAPPING.md "Vocabulary of a therapy context": therapies and routes, therapy codings, and the
condition-group table (codes match by exact code or listed prefix, after normalisation).
"""

from __future__ import annotations

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.domain.context import normalise_icd10
from tests.domain.builders import THERAPIES

GROUPS = (
    "depression",
    "bipolar",
    "bipolar_depression",
    "current_mania_mixed",
    "psychotic_features",
    "psychotic_disorder",
    "ptsd",
    "anxiety",
    "chronic_pain",
    "migraine",
)

# code -> the groups it belongs to, per the MAPPING.md table
MEMBERSHIP: dict[str, set[str]] = {
    **{c: {"depression"} for c in ("F32.0", "F32.1", "F32.2", "F32.9", "F32.A")},
    **{c: {"depression"} for c in ("F33.0", "F33.1", "F33.2", "F33.8", "F33.9")},
    "F32.3": {"depression", "psychotic_features"},
    "F33.3": {"depression", "psychotic_features"},
    **{c: set() for c in ("F32.4", "F32.5", "F33.40", "F33.41", "F33.42", "F32.81", "F32.89")},
    # v2: current mania/mixed (not remission F30.3/F30.4/F31.7x); psychotic features incl. F31.2.
    **{c: {"bipolar", "current_mania_mixed"} for c in ("F31.0", "F31.10", "F31.60", "F30.10")},
    "F31.2": {"bipolar", "current_mania_mixed", "psychotic_features"},
    "F30.2": {"bipolar", "current_mania_mixed", "psychotic_features"},
    "F31.64": {"bipolar", "current_mania_mixed", "psychotic_features"},
    **{c: {"bipolar"} for c in ("F31.9", "F31.89", "F31.70", "F31.74", "F30.3", "F30.4")},
    **{c: {"psychotic_disorder"} for c in ("F20.9", "F22", "F23", "F25.0", "F28", "F29")},
    "F21": {"psychotic_features"},
    **{c: {"bipolar", "bipolar_depression"} for c in ("F31.30", "F31.31", "F31.32", "F31.4")},
    "F31.81": {"bipolar", "bipolar_depression"},
    "F31.5": {"bipolar", "bipolar_depression", "psychotic_features"},
    **{c: {"ptsd"} for c in ("F43.10", "F43.11", "F43.12")},
    "F43.0": set(),
    **{c: {"anxiety"} for c in ("F41.0", "F41.1", "F41.9")},
    **{c: {"chronic_pain"} for c in ("G89.21", "G89.22", "G89.28", "G89.29", "G89.4")},
    "G89.3": set(),
    **{c: {"migraine"} for c in ("G43.009", "G43.909", "G43.A0")},
    "G44.209": set(),
}

ROUTES = {
    "ketamine": {"iv", "im", "intranasal", "oral", "sublingual", "subcutaneous"},
    "esketamine": {"intranasal"},
    "lithium": {"oral"},
    "valproate": {"oral"},
    "ssri_snri": {"oral"},
    "psilocybin": {"oral"},
    "tms": set(),
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize("code,expected", sorted(MEMBERSHIP.items()))
def test_condition_group_table(catalog: Catalog, code: str, expected: set[str]) -> None:
    matched = {g for g in GROUPS if catalog.condition_groups[g].matches(code)}
    assert matched == expected


@pytest.mark.parametrize(
    "raw,normalised",
    [("f332", "F33.2"), ("F33.2", "F33.2"), (" f31 31 ", "F31.31"), ("g43909", "G43.909")],
)
def test_incoming_icd10_codes_are_normalised(raw: str, normalised: str) -> None:
    assert normalise_icd10(raw) == normalised


@pytest.mark.parametrize("therapy", THERAPIES)
def test_therapies_and_their_routes(catalog: Catalog, therapy: str) -> None:
    assert set(catalog.therapies[therapy].routes) == ROUTES[therapy]


def test_therapy_codings_are_recorded_with_verification_and_never_2056959(
    catalog: Catalog,
) -> None:
    assert set(catalog.therapies) == set(THERAPIES)
    for therapy in catalog.therapies.values():
        for coding in therapy.codings:
            assert coding.verification.strip(), f"{therapy.id} {coding.code}"
            assert coding.code != "2056959"
    assert set(catalog.therapy_by_coding.values()) <= set(THERAPIES)

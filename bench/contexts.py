"""Realistic request bodies for the HTTP runs (files the wrk Lua scripts rotate through)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"


def _coding(code: str) -> dict[str, str]:
    return {"system": ICD, "code": code}


#: name -> therapy context; every one answers 200 (checked before each run).
CONTEXTS: dict[str, dict[str, Any]] = {
    "ketamine IV baseline, TRD": {
        "therapy": "ketamine",
        "route": "iv",
        "phase": "baseline",
        "conditions": [_coding("F33.2")],
        "patient": {"sex": "female", "age": 34},
        "findings": ["gi_symptoms", "fatigue"],
        "recent_tests": [{"code": {"system": LOINC, "code": "24356-8"}, "date": "2026-01-05"}],
        "preferences": {"exclude_specimen_types": ["stool"], "evidence_based_only": False},
    },
    "esketamine intranasal induction, hypertension": {
        "therapy": "esketamine",
        "route": "intranasal",
        "phase": "induction",
        "conditions": [_coding("F32.2"), _coding("F41.1")],
        "patient": {"sex": "male", "age": 52},
        "findings": ["hypertension", "sleep_disturbance"],
    },
    "ketamine IM maintenance, PTSD + chronic pain": {
        "therapy": "ketamine",
        "route": "im",
        "phase": "maintenance",
        "conditions": [_coding("F43.12"), _coding("G89.29")],
        "patient": {"sex": "female", "age": 41, "pregnancy_possible": False},
        "findings": ["urinary_symptoms", "substance_use_concern"],
    },
    "lithium maintenance, age 70": {
        "therapy": "lithium",
        "route": "oral",
        "phase": "maintenance",
        "conditions": [_coding("F31.81")],
        "patient": {"sex": "male", "age": 70},
        "findings": ["fatigue"],
    },
    "ssri_snri baseline": {
        "therapy": "ssri_snri",
        "route": "oral",
        "phase": "baseline",
        "conditions": [_coding("F32.1")],
        "patient": {"sex": "female", "age": 27},
        "findings": ["hormonal_symptoms", "inflammatory_condition"],
        "preferences": {"vendors": ["Quest Diagnostics"]},
    },
    "tms baseline": {
        "therapy": "tms",
        "phase": "baseline",
        "conditions": [_coding("F33.1")],
        "patient": {"sex": "other", "age": 45},
        "findings": ["hormonal_symptoms"],
    },
    "valproate induction, RxNorm-coded": {
        "therapy": "valproate",
        "route": "oral",
        "phase": "induction",
        "conditions": [_coding("F31.4")],
        "patient": {"sex": "female", "age": 23},
        "preferences": {"evidence_based_only": True},
    },
}

#: Catalog searches (GET /v1/catalog/panels?q=...).
SEARCHES = ["hepatic", "urine", "crp", "cortisol", "stool", "blood spot", "hcg", "lithium", "dutch"]


def recommendation_bodies(count: int = 70, seed: int = 1) -> list[str]:
    """The contexts above with ages spread around their own, so no two bodies are alike."""
    rng = random.Random(seed)
    names = list(CONTEXTS)
    bodies = []
    for i in range(count):
        body = json.loads(json.dumps(CONTEXTS[names[i % len(names)]]))
        age = body["patient"]["age"] + rng.randint(-3, 3)
        body["patient"]["age"] = max(18, age)
        bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def order_bodies(count: int = 50, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    panel_sets = [
        ["hepatic-function-panel", "urinalysis"],
        ["hepatic-function-panel", "urinalysis", "urine-drug-screen", "hcg-urine"],
        ["urinalysis", "hs-crp"],
    ]
    bodies = []
    for i in range(count):
        body = {
            "patient": {
                "reference": f"ehr-patient-{rng.randint(10_000, 99_999)}",
                "given_name": rng.choice(["Ana", "Ben", "Chloe", "Dev", "Eun"]),
                "family_name": rng.choice(["Silva", "Okafor", "Novak", "Tanaka"]),
                "birth_date": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "sex": rng.choice(["female", "male"]),
            },
            "practitioner": {"npi": "1234567893", "name": "Jo Lee"},
            "panel_ids": panel_sets[i % len(panel_sets)],
            "conditions": [_coding("F33.2")],
            "notes": "Baseline labs before the first ketamine infusion.",
        }
        bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


TRIVIAL_BODIES = [
    json.dumps({"name": f"item-{i}", "value": i, "tags": ["a", "b"]}, separators=(",", ":"))
    for i in range(10)
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path

"""Plain-word labels for the closed vocabularies, as practitioners read them on screen."""

from __future__ import annotations

from typing import Final, get_args

from service.domain.orders import OrderStatus
from service.domain.vocabulary import Finding, Phase, Route, Setting, Sex, SpecimenType

ROUTES: Final[dict[str, str]] = {
    "iv": "Intravenous (IV)",
    "im": "Intramuscular (IM)",
    "intranasal": "Intranasal",
    "oral": "Oral",
    "sublingual": "Sublingual",
    "subcutaneous": "Subcutaneous",
}
PHASES: Final[dict[str, str]] = {
    "baseline": "Baseline (before the first dose)",
    "induction": "Induction",
    "maintenance": "Maintenance",
}
SETTINGS: Final[dict[str, str]] = {
    "clinic_administered": "Given in the clinic",
    "take_home": "Take-home (doses at home)",
}
SEXES: Final[dict[str, str]] = {
    "female": "Female",
    "male": "Male",
    "other": "Other",
    "unknown": "Unknown",
}
FINDINGS: Final[dict[str, str]] = {
    "gi_symptoms": "Gastrointestinal symptoms",
    "hormonal_symptoms": "Hormonal symptoms",
    "sleep_disturbance": "Sleep disturbance",
    "fatigue": "Fatigue",
    "inflammatory_condition": "Inflammatory condition",
    "urinary_symptoms": "Urinary symptoms",
    "liver_disease": "Liver disease",
    "hypertension": "Hypertension",
    "substance_use_concern": "Substance use concern",
    "hypertension_uncontrolled": "Uncontrolled hypertension",
    "vascular_contraindication": "Aneurysm, AVM or intracranial haemorrhage",
    "renal_impairment": "Renal impairment (or falling eGFR)",
    "dose_changed_recently": "Dose changed recently",
    "level_not_stable": "Drug level not yet stable",
    "breastfeeding": "Breastfeeding",
}
SPECIMENS: Final[dict[str, str]] = {
    "serum": "Serum",
    "plasma": "Plasma",
    "whole_blood": "Whole blood",
    "urine": "Urine",
    "dried_urine": "Dried urine",
    "saliva": "Saliva",
    "stool": "Stool",
    "blood_spot": "Blood spot",
}
PRIORITIES: Final[dict[str, str]] = {
    "essential": "Essential",
    "recommended": "Recommended",
    "consider": "Consider",
}
TIERS: Final[dict[str, str]] = {
    "safety": "Safety monitoring",
    "complementary": "Complementary (association-level evidence)",
}
SUPPRESSION: Final[dict[str, str]] = {
    "recently_tested": "Tested recently",
    "excluded_by_preference": "Excluded by your preferences",
    "not_applicable": "Does not apply to this patient",
    "not_indicated_in_phase": "Not indicated in this phase",
    "not_requested": "Not requested",
}
STATUSES: Final[dict[str, str]] = {
    "queued": "Queued",
    "submitted": "Submitted",
    "received": "Received by the lab",
    "in_progress": "In progress",
    "resulted": "Resulted",
    "cancelled": "Cancelled",
    "rejected": "Rejected",
    "failed": "Failed",
}
GRADES: Final[dict[str, str]] = {
    "regulatory_label": "Regulatory label",
    "guideline": "Guideline",
    "systematic_review": "Systematic review",
    "cohort": "Cohort study",
    "case_series": "Case series",
    "association": "Association",
    "clinical_convention": "Clinical convention",
    "expert_consensus": "Expert consensus",
    "critique": "Critique",
}

# Every value of each vocabulary must have a label; a new value without one fails at import.
for _values, _labels in (
    (get_args(Route), ROUTES),
    (get_args(Phase), PHASES),
    (get_args(Setting), SETTINGS),
    (get_args(Sex), SEXES),
    (get_args(Finding), FINDINGS),
    (get_args(SpecimenType), SPECIMENS),
    (get_args(OrderStatus), STATUSES),
):
    _missing = set(_values) - set(_labels)
    if _missing:
        raise RuntimeError(f"no UI label for {sorted(_missing)}")

ALL: Final[dict[str, dict[str, str]]] = {
    "routes": ROUTES,
    "phases": PHASES,
    "settings": SETTINGS,
    "sexes": SEXES,
    "findings": FINDINGS,
    "specimens": SPECIMENS,
    "priorities": PRIORITIES,
    "tiers": TIERS,
    "suppression": SUPPRESSION,
    "statuses": STATUSES,
    "grades": GRADES,
}

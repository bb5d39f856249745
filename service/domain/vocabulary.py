"""The closed vocabularies of a therapy context (MAPPING.md "Vocabulary of a therapy context").

Kept as ``Literal`` types so msgspec validates them at the edge and OpenAPI lists allowed values.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

LOINC: Final = "http://loinc.org"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

Route = Literal["iv", "im", "intranasal", "oral", "sublingual", "subcutaneous"]
Phase = Literal["baseline", "induction", "maintenance"]
Sex = Literal["female", "male", "other", "unknown"]
Finding = Literal[
    "gi_symptoms",
    "hormonal_symptoms",
    "sleep_disturbance",
    "fatigue",
    "inflammatory_condition",
    "urinary_symptoms",
    "liver_disease",
    "hypertension",
    "substance_use_concern",
    "hypertension_uncontrolled",
    "vascular_contraindication",
    "renal_impairment",
    "dose_changed_recently",
    "level_not_stable",
    "breastfeeding",
]
Setting = Literal["clinic_administered", "take_home"]
Severity = Literal["info", "warning", "critical"]
#: Flags derived once per request (MAPPING.md "Derived once per request").
Flag = Literal[
    "minor",
    "take_home",
    "take_home_assumed",
    "take_home_requested",
    "dose_titration",
    "first_treatment_year",
    "antipsychotic_recent",
    "pregnant",
    "unmapped_medication",
]
FamilyId = Literal["neurotransmitter", "hormone", "gi_stool", "inflammation"]
Tier = Literal["safety", "complementary"]
Priority = Literal["essential", "recommended", "consider"]
SuppressionReason = Literal[
    "recently_tested",
    "excluded_by_preference",
    "not_applicable",
    "not_indicated_in_phase",
    "not_requested",
]
SpecimenType = Literal[
    "serum", "plasma", "whole_blood", "urine", "dried_urine", "saliva", "stool", "blood_spot"
]
EvidenceGrade = Literal[
    "regulatory_label",
    "guideline",
    "systematic_review",
    "cohort",
    "case_series",
    "association",
    "clinical_convention",
    "expert_consensus",
    "critique",
]

ROUTES: Final = frozenset(get_args(Route))
PHASES: Final = frozenset(get_args(Phase))
FINDINGS: Final = frozenset(get_args(Finding))
SPECIMEN_TYPES: Final = frozenset(get_args(SpecimenType))

PRIORITY_RANK: Final[dict[str, int]] = {"essential": 0, "recommended": 1, "consider": 2}
TIER_RANK: Final[dict[str, int]] = {"safety": 0, "complementary": 1}
SEVERITY_RANK: Final[dict[str, int]] = {"critical": 0, "warning": 1, "info": 2}
#: Left-out reasons in the order MAPPING.md rule 3 applies them: the first that applies wins.
REASON_RANK: Final[dict[str, int]] = {
    "not_indicated_in_phase": 0,
    "not_applicable": 1,
    "excluded_by_preference": 2,
    "not_requested": 3,
    "recently_tested": 4,
}
FLAGS: Final = frozenset(get_args(Flag))

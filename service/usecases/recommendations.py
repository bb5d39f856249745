"""Recommend: resolve a request against the catalog, run the engine, present the result."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any, Final

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.catalog import Catalog, Coding, Evidence, Panel
from service.domain.context import (
    Medication,
    Preferences,
    RecentTest,
    TherapyContext,
    normalise_icd10,
)
from service.domain.engine import recommend
from service.domain.principal import Principal
from service.domain.recommendation import IgnoredCoding, Recommendation
from service.domain.vocabulary import ICD10CM, RXNORM
from service.persistence.audit import audit_values
from service.persistence.group_insert import GroupInserter, Staging
from service.persistence.models import AuditRecord, StoredRecommendation
from service.persistence.orders import get_recommendation
from service.usecases.clock import Clock
from service.usecases.dto import (
    AdvisoryOut,
    CodingOut,
    EvidenceOut,
    IgnoredCodingOut,
    PanelDetailOut,
    PanelOut,
    PriceOut,
    RecommendationOut,
    RecommendationRequest,
    SuggestionOut,
    SuppressedOut,
)
from service.usecases.errors import InvalidInput, NotFound, field_error, shown

_ENCODER: Final = msgspec.json.Encoder()


def disclaimer(therapy_name: str | None = None) -> str:
    """The result's disclaimer, naming the therapy in context (a lithium result must not speak of
    ketamine); without a name it stays therapy-neutral."""
    return (
        "Decision support for licensed practitioners. Suggestions are not a diagnosis; "
        "complementary panels rest on association-level evidence and have not been shown to "
        f"predict or monitor response to {therapy_name or 'this therapy'}."
    )


def resolve_context(
    catalog: Catalog, request: RecommendationRequest, today: dt.date
) -> TherapyContext:
    """Map ids and codings to the catalog; errors name the field and the allowed values."""
    errors: list[dict[str, Any]] = []
    therapy_id = _resolve_therapy(catalog, request, errors)
    if therapy_id is not None and request.route is not None:
        allowed = catalog.therapies[therapy_id].routes
        if request.route not in allowed:
            errors.append(
                field_error(
                    "route",
                    f"route '{request.route}' does not fit therapy '{therapy_id}'; allowed: "
                    + (", ".join(allowed) if allowed else "none (leave route out)"),
                )
            )
    conditions: list[str] = []
    ignored: list[IgnoredCoding] = []
    for i, coding in enumerate(request.conditions):
        if coding.system != ICD10CM:
            # MAPPING.md rule 7: reported, never a rejection of the whole request.
            ignored.append(
                IgnoredCoding(
                    path=f"conditions[{i}]",
                    reason=f"only ICD-10-CM ({ICD10CM}) conditions are matched; this code "
                    "system is not, so the condition was ignored",
                )
            )
        else:
            conditions.append(normalise_icd10(coding.code))
    medications = _resolve_medications(catalog, request, errors, ignored)
    recent: list[RecentTest] = []
    for i, test in enumerate(request.recent_tests):
        if (test.code is None) == (test.panel_id is None):
            errors.append(field_error(f"recent_tests[{i}]", "give exactly one of code or panel_id"))
            continue
        if test.panel_id is not None and test.panel_id not in catalog.panels:
            errors.append(
                field_error(f"recent_tests[{i}].panel_id", f"unknown panel {shown(test.panel_id)}")
            )
            continue
        if test.date > today:
            # A date after ``as_of`` (but not after today) counts as ``as_of`` (MAPPING v2).
            errors.append(field_error(f"recent_tests[{i}].date", "is in the future"))
            continue
        recent.append(
            RecentTest(
                date=test.date,
                system=test.code.system if test.code else None,
                code=test.code.code if test.code else None,
                panel_id=test.panel_id,
                abnormal=test.abnormal,
            )
        )
    if errors or therapy_id is None:
        raise InvalidInput("The therapy context has values labrec cannot use.", errors=errors)
    return TherapyContext(
        therapy=therapy_id,
        phase=request.phase,
        sex=request.patient.sex,
        route=request.route,
        condition_codes=tuple(conditions),
        age=request.patient.age,
        pregnancy_possible=request.patient.pregnancy_possible,
        pregnant=request.patient.pregnant,
        findings=frozenset(request.findings),
        recent_tests=tuple(recent),
        preferences=Preferences(
            exclude_specimen_types=frozenset(request.preferences.exclude_specimen_types),
            evidence_based_only=request.preferences.evidence_based_only,
            vendors=tuple(request.preferences.vendors),
            request_families=frozenset(request.preferences.request_families),
        ),
        as_of=request.as_of,
        setting=request.setting,
        therapy_started=request.therapy_started,
        last_dose_change=request.last_dose_change,
        medications=tuple(medications),
        ignored_codings=tuple(ignored),
    )


def _resolve_medications(
    catalog: Catalog,
    request: RecommendationRequest,
    errors: list[dict[str, Any]],
    ignored: list[IgnoredCoding],
) -> list[Medication]:
    """Class ids must be known (closed vocabulary); unmapped codings are reported, not refused."""
    found: list[Medication] = []
    for i, med in enumerate(request.medications):
        if (med.code is None) == (med.class_id is None):
            errors.append(field_error(f"medications[{i}]", "give exactly one of code or class_id"))
            continue
        if med.class_id is not None:
            if med.class_id not in catalog.medication_classes:
                errors.append(
                    field_error(
                        f"medications[{i}].class_id",
                        f"unknown medication class '{med.class_id}'; allowed: "
                        + ", ".join(sorted(catalog.medication_classes)),
                    )
                )
                continue
            found.append(Medication(class_id=med.class_id, started=med.started))
            continue
        code = med.code
        if code is None:  # unreachable: exactly one of code or class_id was checked above
            continue
        classes = catalog.class_by_coding.get((code.system, code.code), ())
        if not classes:
            reason = (
                "RxNorm code not mapped to a catalog medication class"
                if code.system == RXNORM
                else f"code system not used for medications (labrec maps RxNorm, {RXNORM})"
            )
            ignored.append(
                IgnoredCoding(
                    path=f"medications[{i}].code",
                    reason=reason + ": not checked for interactions or monitoring",
                )
            )
            continue
        found.extend(Medication(class_id=c, started=med.started) for c in classes)
    return found


def _resolve_therapy(
    catalog: Catalog, request: RecommendationRequest, errors: list[dict[str, Any]]
) -> str | None:
    therapy = request.therapy
    if isinstance(therapy, str):
        if therapy in catalog.therapies:
            return therapy
        errors.append(
            field_error(
                "therapy",
                f"unknown therapy {shown(therapy)}; allowed: "
                f"{', '.join(sorted(catalog.therapies))} "
                f"or an RxNorm coding ({RXNORM})",
            )
        )
        return None
    found = catalog.therapy_by_coding.get((therapy.system, therapy.code))
    if found is None:
        errors.append(
            field_error(
                "therapy",
                f"no catalog therapy for the coding with code {shown(therapy.code)}; see "
                "GET /v1/catalog/therapies for the codings labrec knows",
            )
        )
    return found


def run_recommendation(
    catalog: Catalog, request: RecommendationRequest, now: dt.datetime
) -> tuple[TherapyContext, Recommendation]:
    context = resolve_context(catalog, request, now.date())
    return context, recommend(catalog, context, now.date())


def present(
    recommendation_id: str,
    therapy: str,
    result: Recommendation,
    created_at: dt.datetime,
    therapy_name: str | None = None,
) -> RecommendationOut:
    return RecommendationOut(
        recommendation_id=recommendation_id,
        catalog_version=result.catalog_version,
        created_at=created_at,
        as_of=result.as_of,
        therapy=therapy,
        suggestions=[
            SuggestionOut(
                panel=panel_out(s.panel),
                priority=s.priority,
                rationale=s.rationale,
                evidence=[evidence_out(e) for e in s.evidence],
                rules=list(s.rules),
                cautions=list(s.cautions),
                alternatives=[panel_out(p) for p in s.alternatives],
                retest_days=s.retest_days,
                preselected=s.preselected,
            )
            for s in result.suggestions
        ],
        suppressed=[
            SuppressedOut(
                panel_id=s.panel_id,
                panel_name=s.panel_name,
                reason=s.reason,
                detail=s.detail,
                rules=list(s.rules),
                last_tested=s.last_tested,
                next_due=s.next_due,
            )
            for s in result.suppressed
        ],
        advisories=[
            AdvisoryOut(id=a.id, text=a.text, source=a.source, severity=a.severity)
            for a in result.advisories
        ],
        disclaimer=disclaimer(therapy_name),
        ignored_codings=[
            IgnoredCodingOut(path=c.path, reason=c.reason) for c in result.ignored_codings
        ],
    )


def new_recommendation_id() -> str:
    return str(uuid.uuid4())


def _codings(codings: tuple[Coding, ...]) -> list[CodingOut]:
    return [CodingOut(system=c.system, code=c.code, display=c.display) for c in codings]


@functools.lru_cache(maxsize=8192)
def panel_out(panel: Panel) -> PanelOut:
    """Memoised: a panel's presentation never changes (frozen structs; callers never mutate it)."""
    return PanelOut(
        id=panel.id,
        name=panel.name,
        family=panel.family,
        tier=panel.tier,
        codes=_codings(panel.codes),
        vendor=panel.vendor,
        specimen=panel.specimen.type,
        specimen_collection=panel.specimen.collection,
        specimen_types=list(panel.specimen.types),
        turnaround=panel.turnaround,
        price=msgspec.convert(msgspec.to_builtins(panel.price), PriceOut) if panel.price else None,
    )


def panel_detail_out(panel: Panel) -> PanelDetailOut:
    base = msgspec.structs.asdict(panel_out(panel))
    return PanelDetailOut(
        **base,
        analytes=list(panel.analytes),
        satisfied_by=_codings(panel.satisfied_by),
        caveats=list(panel.caveats),
        unknowns=list(panel.unknowns),
        default_in_family=panel.default,
    )


@functools.lru_cache(maxsize=8192)
def evidence_out(evidence: Evidence) -> EvidenceOut:
    return EvidenceOut(
        id=evidence.id,
        citation=evidence.citation,
        finding=evidence.finding,
        grade=evidence.grade,
        doi=evidence.doi,
        pmid=evidence.pmid,
        label=evidence.label,
        url=evidence.url,
    )


class RecommendationService:
    """Runs the engine and stores each result so an order can cite it later."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        clock: Clock,
        writes: GroupInserter | None = None,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._clock = clock
        #: One commit for many concurrent requests; the CDS face commits its answers through it
        #: too, so this process writes one transaction at a time (SQLite has a single writer).
        self.writes = writes or GroupInserter(sessions)

    async def recommend(
        self, principal: Principal, request: RecommendationRequest
    ) -> RecommendationOut:
        staged = Staging()
        out = self.stage(principal, request, staged)
        await self.writes.commit(staged)
        return out

    def stage(
        self, principal: Principal, request: RecommendationRequest, staged: Staging
    ) -> RecommendationOut:
        """The recommendation, with its stored row and audit row added to ``staged``: the caller
        commits them (with its own rows) before it shows the answer to anyone."""
        now = self._clock()
        context, result = run_recommendation(self._catalog, request, now)
        therapy = self._catalog.therapies[context.therapy]
        out = present(new_recommendation_id(), context.therapy, result, now, therapy.name)
        staged.insert(
            StoredRecommendation,
            {
                "id": out.recommendation_id,
                "organisation_id": principal.organisation_id,
                "created_at": now,
                "catalog_version": result.catalog_version,
                # Already JSON: the engine's msgspec JSON serializer writes Raw as it is.
                "context": msgspec.Raw(_ENCODER.encode(request)),
                "result": msgspec.Raw(_ENCODER.encode(out)),
            },
        )
        staged.insert(
            AuditRecord,
            audit_values(
                principal=principal,
                action="recommendation.create",
                object_type="recommendation",
                object_id=out.recommendation_id,
                patient_reference=None,
                outcome="success",
                now=now,
            ),
        )
        return out

    async def get(
        self, principal: Principal, recommendation_id: str
    ) -> tuple[RecommendationRequest, RecommendationOut]:
        """A stored recommendation of the caller's organisation: the request and the result."""
        async with self._sessions() as session:
            row = await get_recommendation(
                session, principal.organisation_id, recommendation_id[:36]
            )
        if row is None:
            raise NotFound(f"No recommendation {shown(recommendation_id)} in your organisation.")
        return (
            msgspec.convert(row.context, RecommendationRequest, strict=False),
            msgspec.convert(row.result, RecommendationOut, strict=False),
        )

"""(f) Engine latency on generated catalogs 10x and 100x the real one (in-process, no I/O).

``python -m bench.engine_scale [--calls N] [--json]``

What is scaled, for factor k (every generated entry passes ``Catalog.build``'s validation):
- k-1 copies of every panel, family, evidence entry and condition group (the copies' groups hold
  other ICD-10-CM-shaped codes, ``Y00.0``...), so panels, families and groups grow k times;
- k-1 synthetic therapies per real therapy, each with a copy of the real rules and advisories
  that name that therapy (pointing at the copied panels, families and evidence);
- for the real therapies themselves, k-1 further copies of each of their rules and advisories,
  conditioned on the copied condition groups (rules for conditions the bench contexts do not
  have): the rules a request for a real therapy has to consider grow k times.
So rules grow about 2k times. The contexts are the bench's realistic ones (bench/contexts.py), and
their answers must stay the same on every catalog (checked). "no index" repeats the run with the
request-time indexes switched off (every rule of the therapy evaluated, every condition group
asked), which is what the engine did before service/domain/index.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any

import msgspec

from bench.contexts import CONTEXTS
from service.catalog_loader import load_catalog
from service.domain.catalog import (
    Advisory,
    Catalog,
    CatalogFiles,
    ConditionGroup,
    Evidence,
    Family,
    Panel,
    Rule,
    Therapy,
    When,
)
from service.domain.context import TherapyContext
from service.domain.engine import recommend
from service.domain.index import WhenIndex
from service.usecases.dto import RecommendationRequest
from service.usecases.recommendations import resolve_context

TODAY = dt.date(2026, 3, 2)


def _suffix(value: str, j: int) -> str:
    return f"{value}-s{j}"


def _when(when: When, j: int, groups: tuple[str, ...]) -> When:
    mapped = tuple(_suffix(g, j) for g in when.condition_groups_any) or groups
    return msgspec.structs.replace(when, condition_groups_any=mapped)


def _copy_rule(rule: Rule, j: int, therapies: tuple[str, ...], groups: tuple[str, ...]) -> Rule:
    return msgspec.structs.replace(
        rule,
        id=_suffix(rule.id, j) + ("-x" if groups else ""),
        therapies=therapies,
        panels=tuple(_suffix(p, j) for p in rule.panels),
        family=_suffix(rule.family, j) if rule.family else None,
        evidence=tuple(_suffix(e, j) for e in rule.evidence),
        when=_when(rule.when, j, groups),
        applicable_if=_when(rule.applicable_if, j, ()) if rule.applicable_if else None,
    )


def _copy_advisory(
    advisory: Advisory, j: int, therapies: tuple[str, ...], groups: tuple[str, ...]
) -> Advisory:
    return msgspec.structs.replace(
        advisory,
        id=_suffix(advisory.id, j) + ("-x" if groups else ""),
        therapies=therapies,
        when=_when(advisory.when, j, groups),
    )


def scaled(real: Catalog, factor: int) -> Catalog:
    files = real.files
    families: list[Family] = list(files.families)
    panels: list[Panel] = list(files.panels)
    evidence: list[Evidence] = list(files.evidence)
    therapies: list[Therapy] = list(files.therapies)
    groups: list[ConditionGroup] = list(files.condition_groups)
    rules: list[Rule] = list(files.rules)
    advisories: list[Advisory] = list(files.advisories)
    for j in range(1, factor):
        families += [msgspec.structs.replace(f, id=_suffix(f.id, j)) for f in files.families]
        panels += [
            msgspec.structs.replace(
                p,
                id=_suffix(p.id, j),
                family=_suffix(p.family, j),
                specimen_fallback=_suffix(p.specimen_fallback, j) if p.specimen_fallback else None,
            )
            for p in files.panels
        ]
        evidence += [msgspec.structs.replace(e, id=_suffix(e.id, j)) for e in files.evidence]
        therapies += [
            msgspec.structs.replace(t, id=_suffix(t.id, j), codings=()) for t in files.therapies
        ]
        groups += [
            ConditionGroup(
                id=_suffix(g.id, j),
                name=f"{g.name} (synthetic {j})",
                codes=tuple(f"Y{j:02d}.{i}" for i, _ in enumerate(g.codes)),
                prefixes=tuple(f"X{j:02d}{i}" for i, _ in enumerate(g.prefixes)),
            )
            for g in files.condition_groups
        ]
        other = (_suffix(files.condition_groups[0].id, j),)
        for rule in files.rules:
            rules.append(_copy_rule(rule, j, tuple(_suffix(t, j) for t in rule.therapies), ()))
            rules.append(_copy_rule(rule, j, rule.therapies, other))
        for advisory in files.advisories:
            synthetic = tuple(_suffix(t, j) for t in advisory.therapies)
            advisories.append(_copy_advisory(advisory, j, synthetic, ()))
            advisories.append(_copy_advisory(advisory, j, advisory.therapies, other))
    scaled_files = CatalogFiles(
        families=tuple(families),
        panels=tuple(panels),
        evidence=tuple(evidence),
        therapies=tuple(therapies),
        condition_groups=tuple(groups),
        rules=tuple(rules),
        advisories=tuple(advisories),
        # Shared vocabularies, not scaled: the synthetic rules keep citing the real ones.
        medication_classes=files.medication_classes,
        finding_implications=files.finding_implications,
        specimen_exclusions=files.specimen_exclusions,
    )
    return Catalog.build(scaled_files, version=f"scaled-{factor}", origin={})


def without_indexes(catalog: Catalog) -> Catalog:
    """The same catalog with the request-time indexes replaced by full scans (the old engine)."""

    class Scan:
        def __init__(self, items: list[ConditionGroup]) -> None:
            self.items = items

        def groups_of(self, codes: Any) -> frozenset[str]:
            return frozenset(g.id for g in self.items if any(g.matches(c) for c in codes))

    catalog.group_index = Scan(list(catalog.condition_groups.values()))  # type: ignore[assignment]
    catalog.rule_index = {
        key: WhenIndex(index.items, lambda _: When()) for key, index in catalog.rule_index.items()
    }
    catalog.advisory_index = {
        key: WhenIndex(index.items, lambda _: When())
        for key, index in catalog.advisory_index.items()
    }
    return catalog


def _contexts(catalog: Catalog) -> list[TherapyContext]:
    now = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    requests = [msgspec.convert(body, RecommendationRequest) for body in CONTEXTS.values()]
    return [resolve_context(catalog, r, now.date()) for r in requests]


def measure(catalog: Catalog, calls: int) -> dict[str, float]:
    contexts = _contexts(catalog)
    for i in range(500):  # warm-up
        recommend(catalog, contexts[i % len(contexts)], TODAY)
    samples = []
    for i in range(calls):
        context = contexts[i % len(contexts)]
        started = time.perf_counter_ns()
        recommend(catalog, context, TODAY)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def answers(catalog: Catalog) -> list[Any]:
    out = []
    for context in _contexts(catalog):
        result = msgspec.to_builtins(recommend(catalog, context, TODAY))
        result.pop("catalog_version")
        out.append(result)
    return out


def run(calls: int) -> dict[str, Any]:
    real = load_catalog()
    reference = answers(real)
    rows = []
    for factor in (1, 10, 100):
        catalog = real if factor == 1 else scaled(real, factor)
        same = answers(catalog) == reference
        indexed = measure(catalog, calls)
        scan = measure(
            without_indexes(scaled(real, factor) if factor > 1 else load_catalog()), calls
        )
        rows.append(
            {
                "factor": factor,
                "panels": len(catalog.panels),
                "rules": len(catalog.rules),
                "condition_groups": len(catalog.condition_groups),
                "ketamine_rules": len(catalog.rules_by_therapy.get("ketamine", ())),
                "same_answers": same,
                **indexed,
                "no_index_p50_us": scan["p50_us"],
                "no_index_p99_us": scan["p99_us"],
            }
        )
    base = rows[0]
    lines = [
        f"(f) engine.recommend on generated catalogs ({calls} calls each over the "
        f"{len(CONTEXTS)} bench contexts; in-process)",
        "| catalog | panels | rules | groups | ketamine rules | p50 µs | p99 µs | x 1x p50 "
        "| x 1x p99 | no-index p50 µs | no-index p99 µs | same answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['factor']}x | {r['panels']} | {r['rules']} | {r['condition_groups']} "
            f"| {r['ketamine_rules']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} "
            f"| {r['p50_us'] / base['p50_us']:.2f} | {r['p99_us'] / base['p99_us']:.2f} "
            f"| {r['no_index_p50_us']:.1f} | {r['no_index_p99_us']:.1f} "
            f"| {'yes' if r['same_answers'] else 'NO'} |"
        )
    lines.append(
        "Scaled: k-1 copies of every panel, family, evidence entry and condition group; k-1 "
        "synthetic therapies per real one with copies of its rules and advisories; and k-1 more "
        "copies of each real therapy's rules and advisories, conditioned on the copied condition "
        "groups. 'no index' = every rule of the therapy evaluated (the engine before the index)."
    )
    return {"rows": rows, "text": "\n".join(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_scale")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--json", action="store_true", help="one JSON line (for bench.run)")
    args = parser.parse_args()
    report = run(args.calls)
    print(json.dumps(report) if args.json else report["text"])


if __name__ == "__main__":
    main()

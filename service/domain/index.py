"""Indexes built once per catalog so a request's cost follows what can match, not catalog size.

``ConditionIndex`` finds the condition groups of an ICD-10-CM code by dictionary look-ups (its exact
codes, then each of its prefixes) instead of asking every group. ``WhenIndex`` holds the rules (or
advisories) of one therapy and phase and returns, in catalog order, only those whose ``when`` can
hold for a context: a ``when`` that lists condition groups needs one of them, one that lists
findings needs one of them, one that lists routes needs the context's route. Everything it leaves
out would fail ``when`` anyway, so the engine's answer is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from service.domain.catalog import ConditionGroup, When

T = TypeVar("T")


class ConditionIndex:
    def __init__(self, groups: Iterable[ConditionGroup]) -> None:
        exact: dict[str, list[str]] = defaultdict(list)
        prefixes: dict[str, list[str]] = defaultdict(list)
        for group in groups:
            for code in group.codes:
                exact[code].append(group.id)
            for prefix in group.prefixes:
                prefixes[prefix].append(group.id)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._prefixes = {k: tuple(v) for k, v in prefixes.items()}
        self._longest = max((len(p) for p in self._prefixes), default=0)

    def groups_of(self, codes: Iterable[str]) -> frozenset[str]:
        """Ids of the groups matching any of ``codes`` (``ConditionGroup.matches``)."""
        found: set[str] = set()
        for code in codes:
            found.update(self._exact.get(code, ()))
            for end in range(0, min(len(code), self._longest) + 1):
                found.update(self._prefixes.get(code[:end], ()))
        return frozenset(found)


class WhenIndex(Generic[T]):
    """Items (in order) keyed by what their ``when`` requires at least one of."""

    def __init__(self, items: Sequence[T], when_of: Callable[[T], When]) -> None:
        self.items = tuple(items)
        always: list[int] = []
        by_group: dict[str, list[int]] = defaultdict(list)
        by_finding: dict[str, list[int]] = defaultdict(list)
        by_route: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(self.items):
            when = when_of(item)
            if when.condition_groups_any:
                for group in when.condition_groups_any:
                    by_group[group].append(position)
            elif when.findings_any:
                for finding in when.findings_any:
                    by_finding[finding].append(position)
            elif when.routes:
                for route in when.routes:
                    by_route[route].append(position)
            else:
                always.append(position)
        self._always = tuple(always)
        self._by_group = {k: tuple(v) for k, v in by_group.items()}
        self._by_finding = {k: tuple(v) for k, v in by_finding.items()}
        self._by_route = {k: tuple(v) for k, v in by_route.items()}
        self._unconditional = len(always) == len(self.items)

    def candidates(
        self, groups: Iterable[str], findings: Iterable[str], route: str | None
    ) -> Sequence[T]:
        """The items whose ``when`` may hold, in their original order."""
        if self._unconditional:
            return self.items
        positions = set(self._always)
        for group in groups:
            positions.update(self._by_group.get(group, ()))
        for finding in findings:
            positions.update(self._by_finding.get(finding, ()))
        if route is not None:
            positions.update(self._by_route.get(route, ()))
        items = self.items
        return [items[p] for p in sorted(positions)]

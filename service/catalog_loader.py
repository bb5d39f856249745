"""Reads the TOML files of a catalog directory into a validated ``Catalog``.

Each ``*.toml`` file may hold any of the arrays ``family``, ``panel``, ``evidence``, ``therapy``,
``condition_group``, ``rule`` and ``advisory``; files are read in name order. The catalog version is
a content hash of the files, so two processes with the same files report the same version.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any, Final

import msgspec

from service.domain.catalog import (
    Advisory,
    Catalog,
    CatalogError,
    CatalogFiles,
    ConditionGroup,
    Evidence,
    Family,
    FindingImplication,
    MedicationClass,
    Panel,
    Rule,
    SpecimenExclusion,
    Therapy,
)

#: TOML array name -> (CatalogFiles field, entry type)
_SECTIONS: Final[dict[str, tuple[str, type[msgspec.Struct]]]] = {
    "family": ("families", Family),
    "panel": ("panels", Panel),
    "evidence": ("evidence", Evidence),
    "therapy": ("therapies", Therapy),
    "condition_group": ("condition_groups", ConditionGroup),
    "rule": ("rules", Rule),
    "advisory": ("advisories", Advisory),
    "medication_class": ("medication_classes", MedicationClass),
    "finding_implication": ("finding_implications", FindingImplication),
    "specimen_exclusion": ("specimen_exclusions", SpecimenExclusion),
}

DEFAULT_CATALOG_DIR: Final = Path(__file__).resolve().parent.parent / "catalog"


def load_catalog(directory: Path = DEFAULT_CATALOG_DIR) -> Catalog:
    """Load and validate; raises ``CatalogError`` naming the file and entry at fault."""
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise CatalogError(f"{directory}: no *.toml catalog files found")
    merged: dict[str, list[Any]] = {field: [] for field, _ in _SECTIONS.values()}
    origin: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path.name}: not valid TOML: {exc}") from None
        for key, entries in data.items():
            if key not in _SECTIONS:
                raise CatalogError(
                    f"{path.name}: unknown section '{key}'; allowed: {sorted(_SECTIONS)}"
                )
            if not isinstance(entries, list):
                raise CatalogError(f"{path.name}: '{key}' must be an array of tables ([[{key}]])")
            for index, entry in enumerate(entries):
                entry_id = (
                    entry.get("id", entry.get("finding", entry.get("excluded", f"#{index + 1}")))
                    if isinstance(entry, dict)
                    else index
                )
                field, entry_type = _SECTIONS[key]
                try:
                    merged[field].append(msgspec.convert(entry, type=entry_type))
                except msgspec.ValidationError as exc:
                    raise CatalogError(f"{path.name}: {key} '{entry_id}': {exc}") from None
                where = origin.setdefault(f"{key}:{entry_id}", path.name)
                if len(merged[field]) > 1 and any(
                    getattr(e, "id", None) == entry_id for e in merged[field][:-1]
                ):
                    raise CatalogError(
                        f"{path.name}: {key} '{entry_id}': duplicate id (first defined in {where})"
                    )
    catalog_files = CatalogFiles(**{field: tuple(entries) for field, entries in merged.items()})
    return Catalog.build(catalog_files, version=digest.hexdigest()[:16], origin=origin)

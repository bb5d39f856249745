"""The UI's Jinja environment (autoescaped, strict about missing variables) and its filters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from service.ui import labels

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
STATIC: Final = Path(__file__).resolve().parent / "static"
STATIC_PATH: Final = "/ui/static"
#: Bumped with the package version so browsers fetch changed CSS/JS after an upgrade.
ASSET_VERSION: Final = "3"


def _when(value: dt.datetime | dt.date | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat()


def _label(value: str | None, vocabulary: str) -> str:
    if value is None:
        return "—"
    return labels.ALL[vocabulary].get(value, value.replace("_", " "))


def _money(amount: float | None, currency: str | None = None) -> str:
    if amount is None:
        return "unknown"
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def _static(name: str) -> str:
    return f"{STATIC_PATH}/{name}?v={ASSET_VERSION}"


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["label"] = _label
    env.filters["money"] = _money
    env.globals["static"] = _static
    env.globals["labels"] = labels.ALL
    return env


def ui_template_config() -> TemplateConfig[Any]:
    """Litestar's template config for the UI (pass as ``template_config=`` to the app)."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(build_environment()))

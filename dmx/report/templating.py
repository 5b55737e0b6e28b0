"""What the report and the review page share: the templates, their environment, safe JSON, DICOM dates.

Every page is rendered by :func:`environment` with autoescaping on, so every
DICOM string is escaped unless a caller marks it otherwise.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jinja2

from dmx.report import wording

_TEMPLATES = resources.files("dmx.report") / "templates"


def template_text(name: str) -> str:
    """The text of one file of ``dmx/report/templates`` (HTML, CSS or JavaScript)."""
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def environment() -> jinja2.Environment:
    """The Jinja environment of the templates: autoescaping, strict undefined, the ``num`` filter."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(template_text),
        autoescape=True,  # every DICOM string is escaped unless marked otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = wording.fmt
    return env


def script_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: ``<``, ``>``, ``&`` and line separators are escaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text


def dicom_date(da: str | None) -> str | None:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD``; any other text unchanged, empty as None."""
    if da and re.fullmatch(r"\d{8}", da):
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return da or None


def person_name(pn: str | None) -> str | None:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` as ``Family, Given Middle``."""
    if not pn:
        return None
    first = pn.split("=")[0]
    parts = [p.strip() for p in first.split("^")]
    family = parts[0]
    rest = " ".join(p for p in parts[1:3] if p)
    return f"{family}, {rest}" if family and rest else family or rest or None

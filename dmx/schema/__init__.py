"""JSON Schemas of the files dmx writes, shipped as package data.

``measurements.schema.json`` (JSON Schema draft 2020-12) describes the whole
``measurements.json`` of spec section 8 (``dmx.measurements/1``);
``comparison.schema.json`` the ``comparison.json`` of ``dmx compare``
(``dmx.comparison/1``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

MEASUREMENTS_SCHEMA_FILE = "measurements.schema.json"
COMPARISON_SCHEMA_FILE = "comparison.schema.json"


@cache
def _load(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def measurements_schema() -> dict[str, Any]:
    """The JSON Schema of ``measurements.json`` as a new dict (safe to modify)."""
    return json.loads(_load(MEASUREMENTS_SCHEMA_FILE))


def comparison_schema() -> dict[str, Any]:
    """The JSON Schema of ``comparison.json`` as a new dict (safe to modify)."""
    return json.loads(_load(COMPARISON_SCHEMA_FILE))

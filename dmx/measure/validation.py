"""Check a ``measurements.json`` document against its schema and the spec's cross-field rules."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import cache
from typing import Any

from dmx.errors import DmxError


class MeasurementsSchemaError(DmxError, ValueError):
    """A measurements document does not follow ``dmx.measurements/1``.

    ``problems`` lists every problem found, each as ``"<json path>: <message>"``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"measurements do not follow dmx.measurements/1: {problems[0]}{more}")


def _path(parts: Any) -> str:
    return "/".join(str(p) for p in parts) or "<document>"


def _non_finite(value: Any, where: list[Any]) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{_path(where)}: {value!r} is not allowed (use null)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, [*where, k])]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_finite(v, [*where, i])]
    return []


def _lengths(doc: dict[str, Any]) -> list[str]:
    """Every per-frame array has ``frames.count`` entries; key frames are inside the study."""
    frames = doc.get("frames")
    if not isinstance(frames, dict) or not isinstance(frames.get("count"), int):
        return []
    n = frames["count"]
    problems = []
    for key in ("reference", "neutral", "flexion", "extension"):
        i = frames.get(key)
        if isinstance(i, int) and not 0 <= i < n:
            problems.append(f"frames/{key}: {i} is not a frame of 0..{n - 1}")
    arrays: list[tuple[str, Any]] = [("frames/time_ms", frames.get("time_ms"))]
    for v, corners in (doc.get("tracks") or {}).items():
        if isinstance(corners, dict):
            arrays += [(f"tracks/{v}/{c}", a) for c, a in corners.items()]
    arrays += [(f"quality/{v}", a) for v, a in (doc.get("quality") or {}).items()]
    for lv, entry in (doc.get("levels") or {}).items():
        if isinstance(entry, dict):
            arrays += [
                (f"levels/{lv}/{k}", entry.get(k))
                for k in ("angle_deg", "offset_mm", "offset_pct", "angle_uncertainty_deg")
            ]
    adi = doc.get("adi")
    if isinstance(adi, dict):
        arrays += [("adi/adi_mm", adi.get("adi_mm")), ("adi/adi_px", adi.get("adi_px"))]
    for where, a in arrays:
        if isinstance(a, list) and len(a) != n:
            problems.append(f"{where}: {len(a)} entries, expected frames.count = {n}")
    return problems


@cache
def _validator(parts: tuple[str, ...] | None) -> Any:
    """A validator of the schema (built once), or of its top-level ``parts`` only."""
    import jsonschema

    from dmx.schema import measurements_schema

    schema = measurements_schema()
    if parts is not None:
        schema["required"] = [k for k in schema["required"] if k in parts]
        schema["properties"] = {k: v for k, v in schema["properties"].items() if k in parts}
        for key in ("if", "then", "else"):  # conditions on blocks outside ``parts``
            schema.pop(key, None)
    return jsonschema.validators.validator_for(schema)(schema)


def validate_measurements(doc: dict[str, Any], *, parts: Iterable[str] | None = None) -> None:
    """Validate a ``measurements.json`` document: the one validator of the format.

    Checks the JSON Schema (``dmx/schema/measurements.schema.json``), that no
    number is NaN or infinite, and that every per-frame array has
    ``frames.count`` entries.

    Parameters
    ----------
    doc : dict
        The document, as written to (or read from) ``measurements.json``.
    parts : iterable of str, optional
        Check only these top-level blocks (e.g. ``("levels", "curve")``): each is present if the
        schema requires it and follows its schema; the per-frame lengths are not checked. Default:
        the whole document. ``dmx aggregate`` checks this way what its tables read.

    Raises
    ------
    MeasurementsSchemaError
        Listing every problem found.
    """
    validator = _validator(None if parts is None else tuple(sorted(set(parts))))
    problems = [
        f"{_path(err.absolute_path)}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    non_finite = _non_finite(doc, [])
    problems += non_finite
    if isinstance(doc, dict) and parts is None:
        problems += _lengths(doc)
    if not non_finite:
        try:
            json.dumps(doc, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"<document>: not JSON-serialisable ({exc})")
    if problems:
        raise MeasurementsSchemaError(problems)

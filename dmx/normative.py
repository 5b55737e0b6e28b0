"""Normative reference per level: how a patient's motion compares with asymptomatic adults.

A *normative table* (``dmx.normative/1``, JSON) gives, per level and measure, the
reference ``mean``, ``sd`` and ``n`` of a published cohort and the key of its
source; each source carries its full citation, the definition the study used and
how that maps onto the spec's definition. The default table ships as
``dmx/data/normative.json``; a clinic replaces it with its own (``--normative FILE``,
or ``[normative] file = "..."`` in the thresholds TOML).

:func:`normative_block` gives one level's ``levels[lv].normative`` block of
``measurements.json``: for ``rotation_rom_deg``, ``translation_mm`` and
``translation_pct``, ``{"mean", "sd", "n", "z", "statistic", "source"}`` or
``None`` where the table has no value. ``z = (value - mean) / sd`` only when the
table gives an SD; without one (or without the patient's value) ``z`` is ``None``,
never a guess.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dmx.anatomy import LEVELS
from dmx.errors import InputError

NORMATIVE_SCHEMA = "dmx.normative/1"
#: Measures a normative table may give, per level.
NORMATIVE_MEASURES: tuple[str, ...] = ("rotation_rom_deg", "translation_mm", "translation_pct")
DEFAULT_FILE = "normative.json"


@dataclass(frozen=True)
class NormativeTable:
    """A parsed normative table.

    Attributes
    ----------
    title : str
        What the table is.
    origin : str
        ``"default"`` (the packaged table) or the path it was read from.
    sources : dict
        Source key -> ``{"citation", "definition", "mapping", "read_from", ...}``.
    levels : dict
        Level -> measure -> ``{"mean", "sd", "n", "statistic", "source"}``.
    """

    title: str
    origin: str
    sources: dict[str, dict[str, Any]]
    levels: dict[str, dict[str, dict[str, Any]]]

    def citation(self, key: str) -> str:
        """Full citation of source ``key``."""
        return str(self.sources[key]["citation"])


def _finite(value: Any, *, where: str, path: str | Path, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(path, f"{where} must be a finite number or null, got {value!r}")
    if positive and value <= 0:
        raise InputError(path, f"{where} must be positive, got {value!r}")
    return float(value)


def parse_normative(doc: Any, *, origin: str, path: str | Path = "") -> NormativeTable:
    """Check a normative document and return it as a :class:`NormativeTable`.

    Raises
    ------
    dmx.errors.InputError
        Naming ``path`` and the first problem (wrong schema, unknown level or
        measure, a source key not in ``sources``, a non-numeric or non-positive SD, ...).
    """
    path = path or origin
    if not isinstance(doc, dict) or doc.get("schema") != NORMATIVE_SCHEMA:
        raise InputError(path, f'not a normative table (expected "schema": "{NORMATIVE_SCHEMA}")')
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("citation"), str) and s["citation"].strip()
        for s in sources.values()
    ):
        raise InputError(path, "'sources' must map each source key to an object with a 'citation'")
    levels_in = doc.get("levels")
    if not isinstance(levels_in, dict):
        raise InputError(path, "'levels' must be an object of level -> measure -> reference")
    known_levels = {lv.value for lv in LEVELS}
    levels: dict[str, dict[str, dict[str, Any]]] = {}
    for lv, measures in levels_in.items():
        if lv not in known_levels:
            raise InputError(path, f"unknown level {lv!r} (known: {', '.join(sorted(known_levels))})")
        if not isinstance(measures, dict):
            raise InputError(path, f"levels.{lv} must be an object")
        levels[lv] = {}
        for name, ref in measures.items():
            where = f"levels.{lv}.{name}"
            if name not in NORMATIVE_MEASURES:
                raise InputError(path, f"{where}: unknown measure (known: {', '.join(NORMATIVE_MEASURES)})")
            if not isinstance(ref, dict):
                raise InputError(path, f"{where} must be an object with mean, sd, n, source")
            mean = _finite(ref.get("mean"), where=f"{where}.mean", path=path)
            if mean is None:
                raise InputError(path, f"{where}.mean is required")
            sd = _finite(ref.get("sd"), where=f"{where}.sd", path=path, positive=True)
            n = ref.get("n")
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise InputError(path, f"{where}.n must be a positive integer or null, got {n!r}")
            source = ref.get("source")
            if source not in sources:
                raise InputError(path, f"{where}.source {source!r} is not a key of 'sources'")
            levels[lv][name] = {
                "mean": mean,
                "sd": sd,
                "n": n,
                "statistic": str(ref.get("statistic") or "mean"),
                "source": source,
            }
    return NormativeTable(
        title=str(doc.get("title") or ""), origin=origin, sources=dict(sources), levels=levels
    )


@cache
def default_normative() -> NormativeTable:
    """The packaged table (``dmx/data/normative.json``)."""
    text = resources.files("dmx.data").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return parse_normative(json.loads(text), origin="default", path=f"dmx/data/{DEFAULT_FILE}")


def load_normative(path: str | Path | None = None) -> NormativeTable:
    """The table in ``path`` (a ``dmx.normative/1`` JSON file), or the default table.

    Raises
    ------
    dmx.errors.InputError
        When the file is missing, not JSON or not a valid normative table.
    """
    if path is None:
        return default_normative()
    from dmx.files import read_json

    p = Path(path)
    return parse_normative(read_json(p, what="normative table"), origin=str(p), path=p)


def normative_path_from_config(config_path: str | Path | None) -> Path | None:
    """``[normative] file = "..."`` of a thresholds TOML file (relative to the file), or ``None``."""
    if config_path is None:
        return None
    import tomllib

    p = Path(config_path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None  # load_thresholds reports an unreadable config file
    table = data.get("normative")
    if not isinstance(table, dict) or "file" not in table:
        return None
    if not isinstance(table["file"], str) or not table["file"].strip():
        raise InputError(p, "[normative] file must be a path to a normative table")
    f = Path(table["file"])
    return f if f.is_absolute() else p.parent / f


def normative_block(level: str, values: dict[str, Any], table: NormativeTable) -> dict[str, Any]:
    """The ``levels[level].normative`` block of ``measurements.json``.

    Parameters
    ----------
    level : str
        ``"C4-C5"`` etc.
    values : dict
        The level's measurements (``rotation_rom_deg``, ``translation_mm``,
        ``translation_pct``; ``None`` where not measured).
    table : NormativeTable
        The reference table.

    Returns
    -------
    dict
        ``{"table": title, "table_origin": ..., measure: {...} | None}`` for each of
        :data:`NORMATIVE_MEASURES`; each reference holds ``mean``, ``sd``, ``n``,
        ``statistic``, ``z`` (``None`` without an SD or without the value) and
        ``source`` (full citation).
    """
    refs = table.levels.get(level, {})
    out: dict[str, Any] = {"table": table.title, "table_origin": table.origin}
    for name in NORMATIVE_MEASURES:
        ref = refs.get(name)
        if ref is None:
            out[name] = None
            continue
        value = values.get(name)
        z = None
        if value is not None and ref["sd"] is not None:
            z = (float(value) - ref["mean"]) / ref["sd"]
        out[name] = {
            "mean": ref["mean"],
            "sd": ref["sd"],
            "n": ref["n"],
            "statistic": ref["statistic"],
            "z": z,
            "source": table.citation(ref["source"]),
        }
    return out


def add_normative(doc: dict[str, Any], table: NormativeTable | None = None) -> dict[str, Any]:
    """Add ``normative`` to every level of a ``measurements.json`` document (in place); return it."""
    table = default_normative() if table is None else table
    for level, entry in (doc.get("levels") or {}).items():
        entry["normative"] = normative_block(level, entry, table)
    return doc

"""Thresholds: defaults with sources, TOML config file, NAME=VALUE overrides and bad values."""

from __future__ import annotations

import pytest

from dmx.errors import InputError, UsageError
from dmx.measure.config import (
    COMMAND_LINE,
    DEFAULT,
    THRESHOLD_INFO,
    Thresholds,
    load_thresholds,
    parse_override,
    threshold_names,
)

DEFAULTS = {
    "translation_mm": 3.5,
    "offset_range_mm": 3.5,
    "translation_pct": 20.0,
    "excursion_mm": 2.0,
    "angulation_vs_adjacent_deg": 11.0,
    "min_rotation_deg": 5.0,
    "adi_mm": 3.0,
    "curve_tolerance_mm": 2.0,
    "curve_tolerance_pct_depth": 12.5,
    "max_angle_uncertainty_deg": 1.0,
}


def test_defaults_are_the_spec_values_each_with_a_source():
    t = load_thresholds()
    assert {n: getattr(t, n) for n in threshold_names()} == DEFAULTS
    assert set(THRESHOLD_INFO) == set(DEFAULTS)
    out = t.to_json()
    assert out["translation_pct"]["source"].startswith("White & Panjabi")
    assert "Freeman et al. 2020" in out["excursion_mm"]["source"]
    assert "Hipp et al. 2026" in out["min_rotation_deg"]["source"]
    assert out["translation_mm"]["flag"] == "translation_gt_3_5mm"
    assert all(e["origin"] == DEFAULT for e in out.values())


def test_config_file_then_command_line_overrides(tmp_path):
    cfg = tmp_path / "dmx.toml"
    cfg.write_text("[thresholds]\ntranslation_mm = 3.0\nexcursion_mm = 2.5\n[tracking]\nwhatever = 1\n")
    t = load_thresholds(cfg, overrides=["excursion-mm=1.75", "ADI_MM=4"])
    assert (t.translation_mm, t.excursion_mm, t.adi_mm, t.translation_pct) == (3.0, 1.75, 4.0, 20.0)
    assert t.origin("translation_mm") == str(cfg)
    assert t.origin("excursion_mm") == COMMAND_LINE
    assert t.origin("translation_pct") == DEFAULT
    out = t.to_json()
    assert out["translation_mm"] == {**out["translation_mm"], "value": 3.0, "origin": str(cfg)}
    assert out["adi_mm"]["origin"] == COMMAND_LINE


def test_top_level_config_and_mapping_overrides(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text("min_rotation_deg = 4\n")
    t = load_thresholds(cfg, overrides={"min_rotation_deg": "6.5"})
    assert t.min_rotation_deg == 6.5 and t.origin("min_rotation_deg") == COMMAND_LINE
    assert load_thresholds(cfg).min_rotation_deg == 4.0


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("bogus=1", "unknown threshold 'bogus'"),
        ("translation_mm=abc", "'translation_mm' must be a number"),
        ("translation_mm=-1", "'translation_mm' must not be negative"),
        ("translation_mm=nan", "'translation_mm' must be a finite number"),
        ("translation_mm", "NAME=VALUE"),
    ],
)
def test_bad_overrides_name_the_threshold(override, match):
    with pytest.raises(UsageError, match=match):
        load_thresholds(overrides=[override])


def test_zero_is_allowed():
    assert parse_override("curve_tolerance_mm=0") == ("curve_tolerance_mm", 0.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[thresholds]\nadi_mm = "x"\n', "'adi_mm' must be a number"),
        ("[thresholds]\nadi_mm = true\n", "'adi_mm' must be a number"),
        ("[thresholds]\nadi_mm = -3.0\n", "must not be negative"),
        ("[thresholds]\nadi_mm = inf\n", "finite"),
        ("[thresholds]\nunknown_thing = 1\n", "unknown threshold 'unknown_thing'"),
        ("thresholds = 3\n", "must be a table"),
    ],
)
def test_bad_config_values_name_the_file_and_threshold(tmp_path, text, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=match) as info:
        load_thresholds(cfg)
    assert str(cfg) in str(info.value)


def test_unreadable_config_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_thresholds(tmp_path / "missing.toml")
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[thresholds\nadi_mm = 3\n")
    with pytest.raises(InputError, match="not a valid TOML") as info:
        load_thresholds(cfg)
    assert info.value.path == cfg


def test_thresholds_dataclass_validates_and_is_frozen():
    with pytest.raises(UsageError, match="adi_mm"):
        Thresholds(adi_mm=-1.0)
    t = Thresholds()
    with pytest.raises(AttributeError):
        t.adi_mm = 4.0  # type: ignore[misc]
    with pytest.raises(UsageError):
        t.origin("nope")

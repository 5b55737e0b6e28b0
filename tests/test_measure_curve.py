"""Curve shape (spec section 5): Cobb, ARA, Ishihara d, CCI and class, with hand-computed columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_measure_geometry import mirror
from test_measure_support import column_mm, to_image_px

from dmx.anatomy import BODIES, CurveClass, SType, Vertebra
from dmx.measure.curve import classify_curve, curve_shape

TAU = 2.0
EPS = 1e-9


def arc_column(*, facing: str = "right", radius: float = 100.0, body: float = 16.0) -> dict:
    """C2..C7 drawn on an arc convex anteriorly: a lordotic column, independent of the test builder.

    Facing right, the arc's centre is at the origin and the column lies at
    angles phi from -25 deg (C2, top: y up is negative) to +25 deg (C7); the
    posterior wall is at radius R, the anterior at R + body; endplates are
    radial, so every disc is wider anteriorly.
    """
    phis = np.radians(np.linspace(-25.0, 25.0, 6))
    half = np.radians(3.0)
    out = {}
    for v, phi in zip(BODIES, phis, strict=True):
        top, bottom = phi - half, phi + half
        ray = lambda a, r: np.array([r * math.cos(a), r * math.sin(a)])  # noqa: E731
        c = np.array(
            [ray(top, radius + body), ray(top, radius), ray(bottom, radius), ray(bottom, radius + body)]
        )
        out[v] = c + [200.0, 300.0] if facing == "right" else mirror(c + [200.0, 300.0])
    return out


@pytest.mark.parametrize("facing", ["right", "left"])
def test_lordotic_arc_is_positive_and_lordotic(facing):
    col = arc_column(facing=facing)
    h = -1 if facing == "right" else 1
    shape = curve_shape(col, h=h, tolerance=TAU)
    # inf(C7) is radial at +28 deg, inf(C2) at -22 deg: 50 deg of lordosis; same for the posterior walls
    assert shape.cobb_c2c7_deg == pytest.approx(50.0, abs=1e-9)
    assert shape.ara_c2c7_deg == pytest.approx(50.0, abs=1e-9)
    # post_inf points on the circle r = 100: distance of each from the chord (hand formula)
    chord_angle = np.radians((-22.0 + 28.0) / 2)  # chord between -22 and +28 deg, mid-angle 3 deg
    sagitta = 100.0 * math.cos(np.radians(25.0))  # chord's distance from the centre
    expected = {
        v: 100.0 * math.cos(np.radians(phi + 3.0) - chord_angle) - sagitta
        for v, phi in zip((Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6), (-15, -5, 5, 15), strict=True)
    }
    for v, d in expected.items():
        assert shape.d[v] == pytest.approx(d, abs=1e-9)
        assert d > TAU
    chord = 2 * 100.0 * math.sin(np.radians(25.0))
    assert shape.cci == pytest.approx(100 * sum(expected.values()) / chord, abs=1e-9)
    assert shape.curve_class is CurveClass.LORDOTIC and shape.s_type is None


def test_kyphotic_when_the_arc_is_reversed():
    col = {v: c for v, c in arc_column(facing="right").items()}
    # reflect through the vertical line of the chord's middle: convex posteriorly, still facing right
    flipped = {v: np.column_stack([400.0 - c[:, 0], c[:, 1]])[[1, 0, 3, 2]] for v, c in col.items()}
    shape = curve_shape(flipped, h=-1, tolerance=TAU)
    assert shape.cobb_c2c7_deg == pytest.approx(-50.0, abs=1e-9)
    assert shape.curve_class is CurveClass.KYPHOTIC
    assert all(d < -TAU for d in shape.d.values())


def _straight_with(d_c4: float, *, tolerance=TAU, tolerance_pct=None, mm_per_px=(1.0, 1.0)):
    """A straight column with only C4's post_inf moved d_c4 anteriorly of the (vertical) chord."""
    offsets = [0.0, -d_c4, d_c4, 0.0, 0.0]  # C3-C4 undoes C4-C5
    px = to_image_px(column_mm(np.zeros(5), offsets), mm_per_px=mm_per_px)[0]
    corners = dict(zip(BODIES, px, strict=True))
    return curve_shape(corners, h=-1, tolerance=tolerance, tolerance_pct_depth=tolerance_pct)


def test_class_at_and_around_the_tolerance_in_a_real_column():
    at = _straight_with(TAU)
    assert at.d[Vertebra.C4] == TAU  # exactly
    assert at.curve_class is CurveClass.STRAIGHT  # |d| <= tau is on the chord
    assert _straight_with(TAU + 1e-6).curve_class is CurveClass.LORDOTIC
    assert _straight_with(-TAU).curve_class is CurveClass.STRAIGHT
    assert _straight_with(-TAU - 1e-6).curve_class is CurveClass.KYPHOTIC


def test_uncalibrated_tolerance_is_12_5_pct_of_mean_depth():
    # bodies 16 px deep: tau = 2 px
    at = _straight_with(2.0, tolerance=None, tolerance_pct=12.5)
    assert at.tolerance == pytest.approx(2.0)
    assert at.curve_class is CurveClass.STRAIGHT
    assert _straight_with(2.001, tolerance=None, tolerance_pct=12.5).curve_class is CurveClass.LORDOTIC


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ([0.0, TAU, -TAU, 0.0], (CurveClass.STRAIGHT, None)),
        ([0.0, TAU + EPS, 0.0, 0.0], (CurveClass.LORDOTIC, None)),
        ([0.0, TAU - EPS, 0.0, -TAU], (CurveClass.STRAIGHT, None)),
        ([0.0, -TAU - EPS, 1.0, 0.0], (CurveClass.KYPHOTIC, None)),
        ([5.0, 3.0, -TAU, 0.0], (CurveClass.LORDOTIC, None)),
        ([-3.0, -5.0, 4.0, 6.0], (CurveClass.S_CURVE, SType.UPPER_KYPHOTIC)),  # most negative C4 above C6
        ([6.0, 4.0, -5.0, -3.0], (CurveClass.S_CURVE, SType.LOWER_KYPHOTIC)),
        ([0.0, TAU + EPS, -TAU - EPS, 0.0], (CurveClass.S_CURVE, SType.LOWER_KYPHOTIC)),
        ([0.0, -TAU - EPS, TAU + EPS, 0.0], (CurveClass.S_CURVE, SType.UPPER_KYPHOTIC)),
        ([0.0, None, 0.0, 0.0], (CurveClass.UNDETERMINED, None)),
        ([0.0, float("nan"), 0.0, 0.0], (CurveClass.UNDETERMINED, None)),
    ],
)
def test_classify_curve(d, expected):
    assert classify_curve(d, tolerance=TAU) == expected


def test_s_curve_in_a_column_both_ways():
    # offsets per level C2-C3..C6-C7 put post_inf at u = C6 0, C5 4, C4 4, C3 -4, C2 0 (chord vertical)
    px = to_image_px(column_mm(np.zeros(5), [4.0, -8.0, 0.0, 4.0, 0.0]))[0]
    shape = curve_shape(dict(zip(BODIES, px, strict=True)), h=-1, tolerance=TAU)
    assert [shape.d[v] for v in (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6)] == pytest.approx(
        [-4.0, 4.0, 4.0, 0.0]
    )
    assert (shape.curve_class, shape.s_type) == (CurveClass.S_CURVE, SType.UPPER_KYPHOTIC)
    px = to_image_px(column_mm(np.zeros(5), [-4.0, 8.0, 0.0, -4.0, 0.0]), facing="left")[0]
    shape = curve_shape(dict(zip(BODIES, px, strict=True)), h=1, tolerance=TAU)
    assert (shape.curve_class, shape.s_type) == (CurveClass.S_CURVE, SType.LOWER_KYPHOTIC)


def test_missing_vertebra_gives_undetermined_with_nulls_not_zeros():
    col = arc_column()
    no_c5 = {**col, Vertebra.C5: np.full((4, 2), np.nan)}
    shape = curve_shape(no_c5, h=-1, tolerance=TAU)
    assert shape.curve_class is CurveClass.UNDETERMINED and shape.s_type is None
    assert shape.d[Vertebra.C5] is None and shape.cci is None
    assert shape.d[Vertebra.C4] == pytest.approx(curve_shape(col, h=-1, tolerance=TAU).d[Vertebra.C4])
    assert shape.cobb_c2c7_deg == pytest.approx(50.0)
    no_c7 = {v: c for v, c in col.items() if v is not Vertebra.C7}
    shape = curve_shape(no_c7, h=-1, tolerance=TAU)
    assert shape.cobb_c2c7_deg is None and shape.ara_c2c7_deg is None
    assert all(d is None for d in shape.d.values())
    assert shape.curve_class is CurveClass.UNDETERMINED
    assert curve_shape(col, h=None, tolerance=TAU).curve_class is CurveClass.UNDETERMINED

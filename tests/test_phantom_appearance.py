"""Appearance families of the phantom: deterministic, composable, truth-preserving, and visible."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import cv2
import numpy as np
import pytest

from dmx.anatomy import CORNERS
from dmx.cli import main
from dmx.errors import UsageError
from dmx.phantom import Appearance, Family, draw_appearance, imaging, make_phantom, parse_families
from dmx.phantom import appearance as app
from dmx.phantom import skeleton as sk
from dmx.phantom.generator import _acquisition_geometry

SMALL = dict(rows=160, cols=192, frames=4, return_to_neutral=False)
NAMES = [c.value for c in CORNERS]

#: A small acquisition look (explicit, so that tests do not render 2048-px images).
ACQ = app.AcquisitionLook.plain(rows=200, cols=240, mm_per_px=0.7, rotation_deg=17.0, flip=True)


def corners(ph, vertebra: str) -> np.ndarray:
    t = ph.truth["tracks"][vertebra]
    return np.stack([np.array(t[n]) for n in NAMES], axis=1)  # (T, 4, 2)


def look_of(family: Family, seed: int = 3) -> Appearance:
    """The drawn look of one family (acquisition capped at 320 px to keep the tests quick)."""
    return draw_appearance([family], seed=seed, max_size_px=320)


def mu(ph, frame: int = 0) -> np.ndarray:
    """Noise-free total attenuation of a frame, from the phantom's own structures and poses."""
    m = ph.model
    return imaging.attenuation(
        list(m.structures), {n: a[frame] for n, a in m.local_to_image.items()}, m.shape
    )


def sample(image: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(image, [pts[..., 1], pts[..., 0]], order=1)


def body_points(c: np.ndarray, t_lo: float, t_hi: float, n: int = 15) -> np.ndarray:
    """Points inside a body between ``t_lo`` and ``t_hi`` of its depth from the posterior wall
    (0) to the anterior wall (1), over the middle 60 % of its height."""
    ant, post = 0.5 * (c[0] + c[3]), 0.5 * (c[1] + c[2])
    sup, inf = 0.5 * (c[0] + c[1]), 0.5 * (c[2] + c[3])
    t, s = np.meshgrid(np.linspace(t_lo, t_hi, n), np.linspace(-0.3, 0.3, n))
    centre = 0.5 * (ant + post)
    return centre + (t - 0.5)[..., None] * (ant - post) + s[..., None] * (sup - inf)


# --- names -------------------------------------------------------------------------------------------


def test_parse_families():
    assert parse_families("all") == tuple(Family)
    assert parse_families("posterior, cortical") == (Family.CORTICAL, Family.POSTERIOR)
    assert parse_families(None) == parse_families("") == parse_families("none") == ()
    assert parse_families([Family.OCCLUDERS, "occluders"]) == (Family.OCCLUDERS,)
    with pytest.raises(UsageError, match="unknown family 'bone'"):
        parse_families("cortical,bone")


# --- determinism, composition, default --------------------------------------------------------------


def _digest(ph) -> tuple[str, str]:
    truth = json.dumps(ph.truth, sort_keys=True).encode()
    return hashlib.sha256(ph.frames.tobytes()).hexdigest(), hashlib.sha256(truth).hexdigest()


@pytest.mark.parametrize("family", list(Family))
def test_each_family_is_deterministic_per_seed_and_changes_the_image(family):
    a = make_phantom(seed=3, appearance=look_of(family), **SMALL)
    b = make_phantom(seed=3, appearance=look_of(family), **SMALL)
    assert _digest(a) == _digest(b)
    assert a.truth["params"]["appearance"]["families"] == [family.value]
    assert a.truth["params"]["appearance"][family.value] == json.loads(
        json.dumps(asdict(getattr(look_of(family), family.value)))
    )
    other = look_of(family, seed=4)
    assert getattr(other, family.value) != getattr(look_of(family), family.value)  # drawn from the seed
    plain = make_phantom(seed=3, **SMALL)
    if family is not Family.ACQUISITION:
        assert a.frames.shape == plain.frames.shape
        assert np.mean(np.abs(a.frames.astype(float) - plain.frames.astype(float))) > 0.5


def test_families_compose_each_from_its_own_stream():
    both = draw_appearance("cortical,processing", seed=12)
    assert both.cortical == draw_appearance("cortical", seed=12).cortical
    assert both.processing == draw_appearance("processing", seed=12).processing
    assert both.posterior is None and both.families == (Family.CORTICAL, Family.PROCESSING)
    every = draw_appearance("all", seed=12, max_size_px=512)
    assert every.families == tuple(Family) and all(getattr(every, f.value) is not None for f in Family)
    assert every.acquisition.rows <= 512 and every.acquisition.cols <= 512
    with pytest.raises(UsageError, match="do not match"):
        Appearance((Family.CORTICAL,), processing=both.processing)
    assert 0.1 <= every.acquisition.mm_per_px <= 0.5 or every.acquisition.mm_per_px * 512 >= 115


def test_no_appearance_is_the_default_study_byte_for_byte():
    plain = _digest(make_phantom(seed=3, **SMALL))
    for none in (None, "", "none", Appearance()):
        ph = make_phantom(seed=3, appearance=none, **SMALL)
        assert _digest(ph) == plain
        assert "appearance" not in ph.truth["params"]


# --- the truth does not depend on the look ----------------------------------------------------------


def test_truth_corners_are_the_same_whatever_the_look():
    plain = make_phantom(seed=5, anatomy_sd=0.08, **SMALL)
    looks = draw_appearance("cortical,posterior,soft_tissue,occluders,processing", seed=5)
    dressed = make_phantom(seed=5, anatomy_sd=0.08, appearance=looks, **SMALL)
    assert not np.array_equal(plain.frames, dressed.frames)
    for key in ("tracks", "points", "levels", "curve_shape", "adi_mm", "transforms_px"):
        assert dressed.truth[key] == plain.truth[key], key
    assert dressed.truth["params"]["anatomy"] == plain.truth["params"]["anatomy"]


def test_acquisition_truth_goes_through_its_rotation_and_flip():
    ph = make_phantom(seed=5, appearance=Appearance((Family.ACQUISITION,), acquisition=ACQ), **SMALL)
    base = make_phantom(seed=5, rows=200, cols=240, mm_per_px=0.7, frames=4, return_to_neutral=False)
    assert ph.frames.shape == (4, 200, 240)
    geo = _acquisition_geometry(ACQ, 200, 240)
    for v in ("C2", "C4", "C7"):
        np.testing.assert_allclose(corners(ph, v), sk.apply(geo, corners(base, v)), atol=1e-9)
    for level in ("C3-C4", "C5-C6"):  # angles and offsets do not depend on the image's orientation
        np.testing.assert_allclose(
            ph.truth["levels"][level]["angle_deg"], base.truth["levels"][level]["angle_deg"], atol=1e-9
        )
        np.testing.assert_allclose(
            ph.truth["levels"][level]["offset_mm"], base.truth["levels"][level]["offset_mm"], atol=1e-9
        )
    assert ph.truth["facing"] == "left" and ph.dataset.PatientOrientation[0] == "P"
    # the image itself moved with the truth: the default image warped by the same geometry matches it
    warped = cv2.warpAffine(base.frames[0].astype(np.float32), geo[:2], (240, 200), flags=cv2.INTER_LINEAR)
    c = corners(ph, "C4")[0].mean(axis=0)
    y0, x0 = int(c[1]) - 30, int(c[0]) - 30
    a, b = ph.frames[0, y0 : y0 + 60, x0 : x0 + 60].astype(float), warped[y0 : y0 + 60, x0 : x0 + 60]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


# --- each family changes the image where it should --------------------------------------------------


def test_posterior_elements_cover_the_posterior_third_of_the_bodies():
    look = replace(
        look_of(Family.POSTERIOR).posterior, overlap_frac=0.3, pillar_gain=0.5, double_mm=(0.0, 0.0)
    )
    plain = make_phantom(seed=2, photons=0, **SMALL)
    dressed = make_phantom(
        seed=2, photons=0, appearance=Appearance((Family.POSTERIOR,), posterior=look), **SMALL
    )
    m0, m1 = mu(plain), mu(dressed)
    for v in ("C3", "C4", "C5"):
        c = corners(plain, v)[0]
        post, ant = body_points(c, 0.05, 0.22), body_points(c, 0.6, 0.95)
        assert np.mean(sample(m1, post) - sample(m0, post)) > 0.3, v  # a pillar over the body
        # anterior part: the same bone (its trabecular texture drawn on another grid)
        assert abs(np.mean(sample(m1, ant) - sample(m0, ant))) < 0.05, v


def test_airway_darkens_the_prevertebral_soft_tissue():
    look = replace(
        look_of(Family.SOFT_TISSUE).soft_tissue,
        air_gain=2.5,
        airway_scale=1.2,
        airway_shift_mm=0.0,
        muscle_contrast=0.0,
    )
    plain = make_phantom(seed=2, photons=0, **SMALL)
    dressed = make_phantom(
        seed=2, photons=0, appearance=Appearance((Family.SOFT_TISSUE,), soft_tissue=look), **SMALL
    )
    m0, m1 = mu(plain), mu(dressed)
    mm = plain.truth["mm_per_px"][0]
    c = corners(plain, "C4")[0]
    ant, post = 0.5 * (c[0] + c[3]), 0.5 * (c[1] + c[2])
    unit = (ant - post) / np.linalg.norm(ant - post)
    # inside the default airway of C4 (prevertebral 6 mm, 10 mm wide): 10-14 mm anterior to the wall
    pts = ant + np.linspace(10.0, 14.0, 9)[:, None] / mm * unit
    assert np.mean(sample(m0, pts) - sample(m1, pts)) > 0.3
    body = body_points(c, 0.2, 0.8)
    np.testing.assert_allclose(sample(m1, body), sample(m0, body), atol=0.05)


def test_cortical_look_brightens_the_rim_against_the_centre():
    look = replace(
        look_of(Family.CORTICAL).cortical, rim_mm=1.4, rim_gain=2.5, round_mm=0.0, extra_sag_mm=0.0
    )
    kw = dict(seed=2, photons=0, rows=320, cols=320, frames=4, return_to_neutral=False)
    plain = make_phantom(**kw)
    dressed = make_phantom(**kw, appearance=Appearance((Family.CORTICAL,), cortical=look))
    mm = plain.truth["mm_per_px"][0]

    def rim_contrast(ph):
        m, c = mu(ph), corners(ph, "C4")[0]
        ant, post = 0.5 * (c[0] + c[3]), 0.5 * (c[1] + c[2])
        unit = (ant - post) / np.linalg.norm(ant - post)
        along = (c[0] - c[3])[None] * np.linspace(-0.25, 0.25, 9)[:, None]
        rim = sample(m, ant - 0.9 / mm * unit + along)  # inside the anterior wall, mid-height
        centre = np.mean(sample(m, body_points(c, 0.4, 0.6)))
        return float(np.mean(rim) - centre)

    assert rim_contrast(dressed) > rim_contrast(plain) + 0.2


def test_occluders_hide_upper_bodies_in_flexion_and_lower_bodies_under_the_shoulders():
    look = replace(
        look_of(Family.OCCLUDERS).occluders, mandible_shift_mm=(-14.0, -16.0), shoulder_shift_mm=(0.0, 30.0)
    )
    kw = dict(seed=2, rows=256, cols=256, frames=9)
    plain = make_phantom(**kw)
    dressed = make_phantom(**kw, appearance=Appearance((Family.OCCLUDERS,), occluders=look))
    flex = plain.truth["key_frames"]["flexion"]
    vis0, vis1 = plain.truth["visibility"], dressed.truth["visibility"]
    assert vis1["C2"][flex] < vis0["C2"][flex] - 0.05 or vis1["C3"][flex] < vis0["C3"][flex] - 0.05
    assert vis1["C6"][0] < vis0["C6"][0] - 0.1 and vis1["C7"][0] <= vis0["C7"][0]


def test_processing_sharpens_and_acquisition_burns_in_and_inverts():
    proc = app.ProcessingLook(
        exposure=1.0,
        gamma=1.0,
        unsharp_sigma_mm=3.0,
        unsharp_amount=1.5,
        vignetting=0.0,
        noise="quantum",
        noise_sd=0.0,
        window_low_pct=1.0,
        window_high_pct=99.7,
    )
    plain = make_phantom(seed=2, photons=0, **SMALL)
    sharp = make_phantom(
        seed=2, photons=0, appearance=Appearance((Family.PROCESSING,), processing=proc), **SMALL
    )

    def detail(ph):
        f = ph.frames[0].astype(np.float32)
        return float(np.mean(np.abs(f - cv2.GaussianBlur(f, (0, 0), 3.0))))

    assert detail(sharp) > 1.5 * detail(plain)
    acq = replace(
        ACQ, rotation_deg=0.0, flip=False, inverted=True, text=True, mm_per_px=0.8, rows=160, cols=192
    )
    inv = make_phantom(
        seed=2, photons=0, appearance=Appearance((Family.ACQUISITION,), acquisition=acq), **SMALL
    )
    base = make_phantom(seed=2, photons=0, mm_per_px=0.8, **SMALL)
    assert np.corrcoef(inv.frames[0].ravel(), base.frames[0].ravel())[0, 1] < -0.8  # bone dark
    text = [(inv.frames[f, :40, :100] == 255).sum() for f in range(4)]  # burned-in text, white
    assert min(text) > 30 and (base.frames[:, :40, :100] == 255).sum() == 0


# --- command line -------------------------------------------------------------------------------------


def test_cli_appearance(tmp_path, capsys):
    out = tmp_path / "study"
    args = [
        "phantom",
        str(out),
        "--size",
        "192x160",
        "--frames",
        "4",
        "--seed",
        "9",
        "--appearance",
        "posterior,cortical",
    ]
    assert main(args) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["params"]["appearance"]["families"] == ["cortical", "posterior"]
    assert (
        truth["params"]["appearance"]["cortical"]["rim_mm"]
        == draw_appearance("cortical", seed=9).cortical.rim_mm
    )
    assert main(["phantom", str(tmp_path / "x"), "--appearance", "bone"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown family 'bone'" in err
    assert not (tmp_path / "x").exists()


def test_collimator_blades_count_as_hiding_the_bodies():
    open_look = Appearance((Family.ACQUISITION,), acquisition=ACQ)
    bladed = Appearance((Family.ACQUISITION,), acquisition=replace(ACQ, collimator=(0.3, 0.0, 0.0, 0.0)))
    a = make_phantom(seed=5, appearance=open_look, **SMALL)
    b = make_phantom(seed=5, appearance=bladed, **SMALL)
    assert a.truth["tracks"] == b.truth["tracks"]
    drop = [
        np.array(b.truth["visibility"][v]) - np.array(a.truth["visibility"][v]) for v in ("C2", "C3", "C7")
    ]
    assert min(d.min() for d in drop) < -0.2 and max(d.max() for d in drop) <= 0.0
    # behind a blade a body is outside the exposed field as well (in_field), not only hidden
    for v in ("C2", "C3", "C7"):
        hidden = np.array(a.truth["visibility"][v]) - np.array(b.truth["visibility"][v])
        cut = np.array(a.truth["in_field"][v]) - np.array(b.truth["in_field"][v])
        assert np.allclose(cut, hidden, atol=1e-3), v

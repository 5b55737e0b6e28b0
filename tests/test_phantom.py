"""The phantom's ground truth checked against its own images, the spec's sign conventions and DICOM."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from dmx.anatomy import BODIES, CORNERS, Vertebra
from dmx.cli import main
from dmx.errors import ParameterError
from dmx.landmarks import read_landmarks
from dmx.phantom import (
    Calibration,
    Curve,
    Facing,
    FrameTiming,
    Photometric,
    TransferSyntax,
    body_mask,
    make_phantom,
    write_phantom,
)
from dmx.phantom import skeleton as sk

SMALL = {"rows": 256, "cols": 256, "frames": 12}
FR, NS = 0.6, 25  # fit walls and endplates over the middle 60 % of each, 25 scan lines
NAMES = [c.value for c in CORNERS]


def corners(ph, vertebra: str) -> np.ndarray:
    """(T, 4, 2) truth corners of one vertebra in pixels."""
    t = ph.truth["tracks"][vertebra]
    return np.stack([np.array(t[n]) for n in NAMES], axis=1)


# --- the spec's formulas, written out independently of dmx.phantom.truth ------------------------


def cross(p, q):
    return p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]


def facing_h(ph, frame=0) -> float:
    s = 0
    for v in BODIES:
        c = corners(ph, v.value)[frame] * np.array(ph.truth["mm_per_px"][::-1])
        a = (c[0] + c[3]) / 2 - (c[1] + c[2]) / 2
        sup = (c[0] + c[1]) / 2 - (c[2] + c[3]) / 2
        s += np.sign(cross(a, sup))
    return float(np.sign(s))


def ang(p, q, h):
    return h * np.degrees(np.arctan2(cross(p, q), np.sum(p * q, axis=-1)))


def mm(ph, vertebra):
    return corners(ph, vertebra) * np.array(ph.truth["mm_per_px"][::-1])  # (x*col, y*row)


def disc_angle(ph, upper, lower):
    h = facing_h(ph)
    lo, up = mm(ph, lower), mm(ph, upper)
    return ang(lo[:, 0] - lo[:, 1], up[:, 3] - up[:, 2], h)


def offset(ph, upper, lower):
    lo, up = mm(ph, lower), mm(ph, upper)
    sup = lo[:, 0] - lo[:, 1]
    return np.sum((up[:, 2] - lo[:, 1]) * sup / np.linalg.norm(sup, axis=-1, keepdims=True), axis=-1)


def cobb(ph):
    h = facing_h(ph)
    c2, c7 = mm(ph, "C2"), mm(ph, "C7")
    return ang(c7[:, 3] - c7[:, 2], c2[:, 3] - c2[:, 2], h)


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lordotic():
    return make_phantom(seed=3, **SMALL)


@pytest.fixture(scope="module")
def lordotic_left():
    return make_phantom(seed=3, facing="left", **SMALL)


# --- geometry of the truth ----------------------------------------------------------------------------


def _edge(mask, p0, direction, length_px, step=0.02):
    """Distance from p0 (inside) to the outline along direction: integral of the 1 -> 0 profile."""
    s = np.arange(0.0, length_px + step / 2, step)
    pts = p0[None] + s[:, None] * direction[None]
    vals = ndimage.map_coordinates(mask, [pts[:, 1], pts[:, 0]], order=1)
    assert vals[0] > 0.999 and vals[-1] < 1e-3
    return float(np.trapezoid(vals, s))


def corners_from_mask(mask, truth_c, vertebra, mm_per_px, anatomy=sk.DEFAULT_ANATOMY):
    """Estimate the 4 corners from a rendered outline: quadratic fits to walls and endplates, intersected."""
    b = anatomy.sizes[Vertebra(vertebra)]
    centre = truth_c.mean(axis=0)
    eu = (truth_c[0] - truth_c[1]) + (truth_c[3] - truth_c[2])
    eu /= np.linalg.norm(eu)
    ev = (truth_c[0] + truth_c[1]) / 2 - (truth_c[2] + truth_c[3]) / 2
    ev -= (ev @ eu) * eu
    ev /= np.linalg.norm(ev)
    d, h, inset, span = (
        b.depth_mm / 2 / mm_per_px,
        b.height_ant_mm / 2 / mm_per_px,
        3 / mm_per_px,
        6 / mm_per_px,
    )
    out = []
    for sa, sb in ((1, 1), (-1, 1), (-1, -1), (1, -1)):  # CORNERS order
        bs = np.linspace(-FR * h, FR * h, NS)
        wall = [
            sa * (d - inset) + sa * _edge(mask, centre + sa * (d - inset) * eu + y * ev, sa * eu, span)
            for y in bs
        ]
        fa = np.polyfit(bs, wall, 2)
        as_ = np.linspace(-FR * d, FR * d, NS)
        plate = [
            sb * (h - inset) + sb * _edge(mask, centre + x * eu + sb * (h - inset) * ev, sb * ev, span)
            for x in as_
        ]
        fb = np.polyfit(as_, plate, 2)
        a, bb = sa * d, sb * h
        for _ in range(20):
            a = np.polyval(fa, bb)
            bb = np.polyval(fb, a)
        out.append(centre + a * eu + bb * ev)
    return np.array(out)


@pytest.mark.parametrize(("facing", "anatomy_sd"), [("right", 0.0), ("left", 0.0), ("right", 0.12)])
def test_corners_sit_on_the_rendered_outline_corners(facing, anatomy_sd):
    ph = make_phantom(
        seed=5, facing=facing, rows=256, cols=320, frames=9, mm_per_px=0.45, anatomy_sd=anatomy_sd
    )
    flex = ph.truth["motion_key_frames"]["flexion"]
    worst = 0.0
    for frame in (0, flex):
        for v in ("C3", "C4", "C5", "C6"):
            mask = body_mask(ph, v, frame, ramp_px=3.0)
            est = corners_from_mask(mask, corners(ph, v)[frame], v, 0.45, ph.model.anatomy)
            worst = max(worst, float(np.max(np.linalg.norm(est - corners(ph, v)[frame], axis=1))))
    assert worst < 0.05, worst


def test_rendered_image_has_strong_edges_at_the_endplates():
    ph = make_phantom(seed=2, photons=0, flicker=0, sway_mm=0, sway_deg=0, **SMALL)
    img = ph.frames[0].astype(float)
    gy, gx = np.gradient(ndimage.gaussian_filter(img, 1.0))
    g = np.hypot(gx, gy)
    c = corners(ph, "C4")[0]
    on_edge = [g[int(round(p[1])), int(round(p[0]))] for p in np.linspace(c[1], c[0], 7)[2:5]]
    on_edge += [g[int(round(p[1])), int(round(p[0]))] for p in np.linspace(c[2], c[3], 7)[2:5]]
    centre = c.mean(axis=0)
    inside = g[int(centre[1]) - 2 : int(centre[1]) + 3, int(centre[0]) - 2 : int(centre[0]) + 3]
    assert np.mean(on_edge) > 3 * np.mean(inside)


def test_corners_move_rigidly(lordotic):
    for v in ph_bodies():
        c = corners(lordotic, v)
        d = np.linalg.norm(c[:, :, None] - c[:, None, :], axis=-1)  # (T, 4, 4)
        assert np.max(np.abs(d - d[0])) < 1e-6


def ph_bodies():
    return [v.value for v in BODIES] + ["T1"]


def test_requested_rom_and_translation_are_recovered():
    common = dict(seed=4, rom_deg={"C4-C5": 18.0, "C2-C3": 9.0}, **SMALL)
    stable = make_phantom(**common)
    unstable = make_phantom(unstable_mm={"C4-C5": 4.0}, **common)
    for level, rom in (("C4-C5", 18.0), ("C2-C3", 9.0), ("C5-C6", sk.DEFAULT_ROM_DEG["C5-C6"])):
        up, lo = level.split("-")
        a = disc_angle(stable, up, lo)
        assert a.max() - a.min() == pytest.approx(rom, abs=1e-6)
        assert np.argmax(a) == stable.truth["motion_key_frames"]["extension"]
        assert np.argmin(a) == stable.truth["motion_key_frames"]["flexion"]
        assert stable.truth["levels"][level]["rotation_range_deg"] == pytest.approx(rom, abs=1e-6)
    k = unstable.truth["key_frames"]
    assert k == stable.truth["key_frames"]
    t_stable = offset(stable, "C4", "C5")[k["flexion"]] - offset(stable, "C4", "C5")[k["extension"]]
    t_unstable = offset(unstable, "C4", "C5")[k["flexion"]] - offset(unstable, "C4", "C5")[k["extension"]]
    assert t_unstable - t_stable == pytest.approx(4.0, abs=1e-6)
    assert 0.5 < t_stable < 3.5  # the natural coupled translation of a healthy segment
    assert unstable.truth["levels"]["C4-C5"]["translation_mm"] == pytest.approx(t_unstable, abs=1e-9)
    # neighbouring levels unaffected
    np.testing.assert_allclose(offset(unstable, "C5", "C6"), offset(stable, "C5", "C6"), atol=1e-9)


@pytest.mark.parametrize("facing", ["right", "left"])
def test_spec_sign_convention_lordosis_positive_for_both_facings(facing):
    lord = make_phantom(seed=1, curve="lordotic", facing=facing, **SMALL)
    kyph = make_phantom(seed=1, curve="kyphotic", facing=facing, **SMALL)
    assert facing_h(lord) == (-1.0 if facing == "right" else 1.0)
    assert 15 < cobb(lord)[0] < 30
    assert -30 < cobb(kyph)[0] < -10
    # flexion lowers the Cobb angle, extension raises it (positive = extension)
    k = lord.truth["motion_key_frames"]
    assert cobb(lord)[k["flexion"]] < cobb(lord)[0] - 20 < cobb(lord)[k["extension"]] - 40
    # discs of a lordotic neck are wider anteriorly: positive disc angles at neutral
    assert all(disc_angle(lord, *lv.split("-"))[0] > 0 for lv in ("C3-C4", "C4-C5", "C5-C6"))


def _ishihara(ph, frame=0):
    m = np.stack([mm(ph, v.value)[frame] for v in BODIES])
    a, b = m[0, 2], m[5, 2]
    ant = np.mean((m[:, 0] + m[:, 3]) / 2 - (m[:, 1] + m[:, 2]) / 2, axis=0)
    side = np.sign(cross(b - a, ant))
    return np.array([side * cross(b - a, m[i, 2] - a) / np.linalg.norm(b - a) for i in range(1, 5)])


@pytest.mark.parametrize(
    ("curve", "expect"),
    [
        ("lordotic", "lordotic"),
        ("straight", "straight"),
        ("kyphotic", "kyphotic"),
        ("s_upper_kyphotic", "upper"),
        ("s_lower_kyphotic", "lower"),
    ],
)
def test_neutral_curve_shape_matches_its_name(curve, expect):
    ph = make_phantom(seed=0, curve=curve, **SMALL)
    d = _ishihara(ph)
    if expect == "lordotic":
        assert d.max() > 2 and d.min() > -2
    elif expect == "kyphotic":
        assert d.min() < -2 and d.max() < 2
    elif expect == "straight":
        assert np.all(np.abs(d) <= 2)
    else:
        assert d.max() > 2 and d.min() < -2
        upper_is_kyphotic = np.argmin(d) < np.argmax(d)
        assert upper_is_kyphotic == (expect == "upper")
    assert ph.truth["curve_shape"]["neutral"]["class"] == (
        "s_curve" if expect in ("upper", "lower") else expect
    )


def test_facing_left_mirrors_the_truth(lordotic, lordotic_left):
    w = SMALL["cols"]
    for v in ph_bodies():
        r, left = corners(lordotic, v), corners(lordotic_left, v)
        np.testing.assert_allclose(left[..., 0], w - 1 - r[..., 0], atol=1e-9)
        np.testing.assert_allclose(left[..., 1], r[..., 1], atol=1e-9)
    # the images are mirrored too (same structures; noise differs only by its draw)
    a = lordotic.frames[0].astype(float)
    b = lordotic_left.frames[0][:, ::-1].astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_same_seed_same_study_other_seed_other_noise(lordotic):
    again = make_phantom(seed=3, **SMALL)
    assert np.array_equal(again.frames, lordotic.frames)
    assert json.dumps(again.truth) == json.dumps(lordotic.truth)
    assert again.dataset.StudyInstanceUID == lordotic.dataset.StudyInstanceUID
    other = make_phantom(seed=4, **SMALL)
    assert not np.array_equal(other.frames, lordotic.frames)
    assert other.dataset.StudyInstanceUID != lordotic.dataset.StudyInstanceUID


def test_adi_and_visibility(lordotic):
    t = lordotic.truth
    assert t["adi_mm"][0] == pytest.approx(1.5, abs=1e-9)
    assert max(abs(a - 1.5) for a in t["adi_mm"]) < 0.3
    assert min(t["visibility"]["C5"]) == 1.0
    assert t["visibility"]["C3"][0] == 1.0
    assert t["visibility"]["C3"][t["motion_key_frames"]["flexion"]] < 0.95  # the mandible comes down
    assert max(t["visibility"]["T1"]) < 0.5  # behind the shoulders
    # in_field ignores occluding bones: C3 under the mandible stays wholly inside the image
    assert t["in_field"]["C3"][t["motion_key_frames"]["flexion"]] == 1.0
    assert all(
        f >= v for b in t["visibility"] for f, v in zip(t["in_field"][b], t["visibility"][b], strict=True)
    )
    arch, dens = np.array(t["points"]["C1.arch_post"]), np.array(t["points"]["C2.dens_ant"])
    assert np.all(arch[:, 0] > dens[:, 0])  # facing right: the arch lies anterior (+x) of the dens


def test_anisotropic_spacing_keeps_rigidity_in_mm():
    ph = make_phantom(seed=1, mm_per_px=(0.6, 0.5), **SMALL)
    assert ph.truth["mm_per_px"] == [0.6, 0.5]
    c = mm(ph, "C5")
    d = np.linalg.norm(c[:, :, None] - c[:, None, :], axis=-1)
    assert np.max(np.abs(d - d[0])) < 1e-9
    assert np.linalg.norm(c[0, 0] - c[0, 1]) == pytest.approx(np.hypot(16.0, (13.8 - 13.5) / 2), abs=1e-9)


# --- DICOM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "check"),
    [
        ({"calibration": "PixelSpacing", "transfer_syntax": "explicit"}, "ps"),
        ({"calibration": "ImagerPixelSpacing+ERMF", "magnification": 1.2, "transfer_syntax": "rle"}, "ermf"),
        ({"calibration": "ImagerPixelSpacing", "bits": 12, "photometric": "MONOCHROME1"}, "ips"),
        ({"calibration": "none", "transfer_syntax": "jpeg", "frame_timing": "FrameTimeVector"}, "none"),
    ],
)
def test_dicom_reads_back(tmp_path, options, check):
    ph = make_phantom(seed=7, rows=160, cols=192, frames=6, fps=12.5, **options)
    paths = write_phantom(ph, tmp_path / "s")
    ds = pydicom.dcmread(paths["study"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.12.2"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert (ds.Rows, ds.Columns, int(ds.NumberOfFrames)) == (160, 192, 6)
    assert str(ds.PatientName) == "PHANTOM^7"
    spacing = ph.truth["mm_per_px"]
    if check == "ps":
        assert [float(x) for x in ds.PixelSpacing] == pytest.approx(spacing, rel=1e-9)
        assert "ImagerPixelSpacing" not in ds
    elif check == "ermf":
        ermf = float(ds.EstimatedRadiographicMagnificationFactor)
        assert [float(x) / ermf for x in ds.ImagerPixelSpacing] == pytest.approx(spacing, rel=1e-8)
        assert "PixelSpacing" not in ds
    elif check == "ips":
        assert [float(x) for x in ds.ImagerPixelSpacing] == pytest.approx(
            [s * 1.15 for s in spacing], rel=1e-8
        )
        assert "EstimatedRadiographicMagnificationFactor" not in ds
    else:
        assert not any(k in ds for k in ("PixelSpacing", "ImagerPixelSpacing"))
    if options.get("frame_timing") == "FrameTimeVector":
        assert ds.FrameIncrementPointer == 0x00181065
        assert [float(x) for x in ds.FrameTimeVector] == pytest.approx([0] + [80.0] * 5)
    else:
        assert ds.FrameIncrementPointer == 0x00181063
        assert float(ds.FrameTime) == pytest.approx(80.0)
    assert ds.PhotometricInterpretation == options.get("photometric", "MONOCHROME2")
    assert ds.BitsStored == options.get("bits", 8)
    pixels = ds.pixel_array
    if options.get("transfer_syntax") == "jpeg":
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert np.mean(np.abs(pixels.astype(float) - ph.frames)) < 3.0
    else:
        assert np.array_equal(pixels, ph.frames)
    if options.get("photometric") == "MONOCHROME1":  # bone is stored dark
        c = corners(ph, "C4")[0].mean(axis=0).astype(int)
        assert pixels[0][c[1], c[0]] < np.median(pixels[0])


def test_landmarks_file_is_the_reference_frame(tmp_path):
    ph = make_phantom(seed=2, reference_frame=5, **SMALL)
    lm = read_landmarks(write_phantom(ph, tmp_path)["landmarks"])
    assert lm.frame == 5
    assert set(lm.vertebrae) == set(BODIES)
    np.testing.assert_allclose(lm.corners_px[Vertebra.C4], corners(ph, "C4")[5])
    assert {p.value for p in lm.extra_px} == {"C1.arch_post", "C2.dens_ant"}


def test_bad_values_raise_usage_error():
    with pytest.raises(ParameterError, match="^curve must be one of lordotic, .*, got 'wavy'$") as e:
        make_phantom(curve="wavy")
    assert e.value.parameter == "curve"
    with pytest.raises(ParameterError, match="^rom_deg names an unknown level 'C4-C9'") as e:
        make_phantom(rom_deg={"C4-C9": 10})
    assert e.value.parameter == "rom_deg"
    with pytest.raises(ParameterError, match=r"^transfer_syntax jpeg \(baseline\) needs bits 8$"):
        make_phantom(transfer_syntax="jpeg", bits=12)
    with pytest.raises(ParameterError, match=r"^reference_frame must be an integer in 0\.\.9, got 10$"):
        make_phantom(frames=10, reference_frame=10)
    with pytest.raises(ParameterError, match=r"^mm_per_px must lie in 0\.02\.\.2\.0 mm, got 3\.0$"):
        make_phantom(mm_per_px=3.0)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--curve", "wavy"],
            "--curve must be one of lordotic, straight, kyphotic, s_upper_kyphotic, "
            "s_lower_kyphotic, got 'wavy'",
        ),
        (["--rom", "C4-C5=50"], "--rom must be 0..40 degrees at C4-C5, got 50"),
        (["--unstable", "C4-C5=x"], "--unstable must be a number at C4-C5, got 'x'"),
        (["--frames", "2"], "--frames must be an integer in 4..5000, got 2"),
        (["--bits", "12", "--transfer-syntax", "jpeg"], "--transfer-syntax jpeg (baseline) needs bits 8"),
        (
            ["--appearance", "bone"],
            "--appearance names an unknown family 'bone' (expected all or a "
            "comma-separated list of cortical, posterior, soft_tissue, occluders, processing, acquisition)",
        ),
    ],
)
def test_cli_names_the_option_of_a_bad_parameter(tmp_path, capsys, args, line):
    assert main(["phantom", str(tmp_path / "x"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"dmx: error: {line}"


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_writes_three_files(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["phantom", str(out), "--size", "192x160", "--frames", "6", "--unstable", "C4-C5", "--seed", "9"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["landmarks.json", "study.dcm", "truth.json"]
    truth = json.loads((out / "truth.json").read_text())
    assert truth["schema"] == "dmx.phantom-truth/1"
    assert truth["unstable_levels"] == {"C4-C5": 4.0}
    assert len(truth["tracks"]["C7"]["post_inf"]) == 6
    ds = pydicom.dcmread(out / "study.dcm")
    assert (ds.Columns, ds.Rows) == (192, 160)


@pytest.mark.parametrize(
    "bad", [["--curve", "banana"], ["--size", "12"], ["--unstable", "C4-C5=x"], ["--calibration", "ERMF"]]
)
def test_cli_bad_option_is_one_line_exit_2(tmp_path, capsys, bad):
    assert main(["phantom", str(tmp_path / "x"), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dmx: error:")
    assert not (tmp_path / "x").exists()


def test_written_files_are_byte_identical_for_a_seed(tmp_path):
    opts = dict(seed=11, rows=128, cols=160, frames=5, transfer_syntax="rle", photometric="MONOCHROME1")
    a = write_phantom(make_phantom(**opts), tmp_path / "a")
    b = write_phantom(make_phantom(**opts), tmp_path / "b")
    for key in ("study", "truth", "landmarks"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    ds = pydicom.dcmread(a["study"])
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID


def test_sample_data_matches_its_truth():
    root = Path(__file__).resolve().parents[1] / "sample_data"
    studies = sorted(p for p in root.iterdir() if (p / "truth.json").exists())
    assert {p.name for p in studies} >= {"lordotic_stable", "s_curve_unstable"}
    for study in studies:
        truth = json.loads((study / "truth.json").read_text())
        ds = pydicom.dcmread(study / "study.dcm", stop_before_pixels=True)
        assert int(ds.NumberOfFrames) == truth["frames"]
        assert (study / "study.dcm").stat().st_size + (study / "truth.json").stat().st_size < 5_000_000
        lm = read_landmarks(study / "landmarks.json")
        ref = truth["reference_frame"]
        np.testing.assert_allclose(lm.corners_px[Vertebra.C5][0], truth["tracks"]["C5"]["ant_sup"][ref])
    s = json.loads((root / "s_curve_unstable" / "truth.json").read_text())
    assert s["unstable_levels"] == {"C4-C5": 4.0}
    assert s["curve_shape"]["neutral"]["class"] == "s_curve"
    assert s["levels"]["C4-C5"]["translation_mm"] > s["levels"]["C3-C4"]["translation_mm"] + 3.5


# --- anatomical variation ---------------------------------------------------------------------------

#: Two small default phantoms (no ``anatomy_sd``): the default must stay what it was before anatomical
#: variation existed. Until session 28 this was a sha256 of frames and truth taken with the generator
#: before ``anatomy_sd`` existed (e.g. 69cc0747..., 8473fc0e...); on a clean install of 2026-12-02 (numpy
#: 2.4.6, OpenCV 5.0.0.93 or 5.1.0.95) those digests failed on that same code (commit db58f70): the
#: library versions, not the generator, round some values differently. The reference is now the frames and
#: truth of those phantoms kept in ``tests/data/default_phantoms.npz`` (written by this generator on
#: 2026-12-02, which on session 27's install gave the old digests), compared within float rounding.
BASELINE = [
    dict(seed=3, rows=160, cols=192, frames=5),
    dict(
        seed=8,
        rows=128,
        cols=128,
        frames=4,
        curve="s_upper_kyphotic",
        facing="left",
        unstable_mm={"C4-C5": 3.0},
    ),
]


#: Truth keys added since the baseline (``in_field``, session 26) and its prose ``notes`` (which describe
#: them): left out of the comparison, so that every value the baseline had is checked unchanged.
ADDED_SINCE = ("in_field", "notes")


def _truth(ph) -> dict:
    return json.loads(json.dumps({k: v for k, v in ph.truth.items() if k not in ADDED_SINCE}))


def _digests(ph) -> tuple[str, str]:
    truth = json.dumps(_truth(ph), sort_keys=True).encode()
    return hashlib.sha256(ph.frames.tobytes()).hexdigest(), hashlib.sha256(truth).hexdigest()


def _assert_close(got, want, where: str = "truth") -> None:
    """Equal structure and text; numbers within float rounding (rel 1e-6, abs 1e-6)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, (where, got, want)
    else:
        assert got is not None and abs(got - want) <= 1e-6 + 1e-6 * abs(want), (where, got, want)


@pytest.mark.parametrize("index", range(len(BASELINE)))
def test_default_anatomy_is_unchanged_from_before(index):
    options = BASELINE[index]
    ref = np.load(Path(__file__).parent / "data" / "default_phantoms.npz")
    default = make_phantom(**options)
    frames = default.frames.astype(np.int64)
    want = ref[f"frames{index}"].astype(np.int64)
    assert frames.shape == want.shape
    # a few grey levels on under 1 % of the pixels where a library rounds differently (OpenCV 5.1 against
    # 5.0: 0.6 % of pixels, at most 3 levels of 255); a change of anatomy moves whole outlines
    assert np.abs(frames - want).max() <= 4
    assert np.mean(frames != want) < 0.01
    _assert_close(_truth(default), json.loads(ref[f"truth{index}"].tobytes().decode()))
    explicit = make_phantom(anatomy_sd=0.0, **options)
    assert _digests(explicit) == _digests(default)  # the same generator on one install: byte-identical
    assert "anatomy" not in explicit.truth["params"] and "anatomy_sd" not in explicit.truth["params"]


def _body_dims_mm(ph, vertebra):
    """Depth (mid-height) and posterior/anterior wall heights of a body from its truth corners, mm."""
    c = mm(ph, vertebra)[0]
    post, ant = np.linalg.norm(c[1] - c[2]), np.linalg.norm(c[0] - c[3])
    depth = np.linalg.norm((c[0] + c[3]) / 2 - (c[1] + c[2]) / 2)
    return depth, post, ant


def test_anatomy_variation_changes_sizes_and_truth_follows_them():
    plain = make_phantom(seed=6, **SMALL)
    varied = make_phantom(seed=6, anatomy_sd=0.1, **SMALL)
    block = varied.truth["params"]["anatomy"]
    assert varied.truth["params"]["anatomy_sd"] == 0.1
    assert set(block["bodies"]) == {v.value for v in sk.CORNER_BODIES}
    assert set(block["disc_mm"]) == {v.value for v in BODIES}
    ratios = []
    for v in ph_bodies():
        b = block["bodies"][v]
        depth, post, ant = _body_dims_mm(varied, v)
        # the truth corners are the recorded sizes, exactly
        assert depth == pytest.approx(b["depth_mm"], abs=1e-9)
        assert post == pytest.approx(b["height_post_mm"], abs=1e-9)
        assert ant == pytest.approx(b["height_ant_mm"], abs=1e-9)
        d0, p0, a0 = _body_dims_mm(plain, v)
        assert d0 == pytest.approx(sk.BODY_SIZES[Vertebra(v)].depth_mm, abs=1e-9)
        ratios.append((depth / d0, post / p0, ant / a0))
    ratios = np.array(ratios)
    assert np.abs(ratios - 1).max() > 0.03  # sizes vary ...
    assert np.std(ratios[:, 1] / ratios[:, 2]) > 0.01  # ... and wedging varies from level to level
    shape = [(block["bodies"][v]["waist_ant_mm"], block["bodies"][v]["endplate_sag_mm"]) for v in ph_bodies()]
    assert len({round(w, 6) for w, _ in shape}) > 3 and len({round(s, 6) for _, s in shape[1:]}) > 3
    assert block["bodies"]["C2"]["endplate_sag_mm"] == 0.0
    # the C1 arch and the dens follow the varied C2: the interval is still the requested one
    assert varied.truth["adi_mm"][0] == pytest.approx(1.5, abs=1e-9)
    # disc heights: the mid-disc gap between C4 and C5 at neutral is the recorded one
    c4, c5 = mm(varied, "C4")[0], mm(varied, "C5")[0]
    gap = np.linalg.norm((c4[2] + c4[3]) / 2 - (c5[0] + c5[1]) / 2)
    assert gap == pytest.approx(block["disc_mm"]["C4"], abs=0.05)  # the disc below C4
    assert not np.array_equal(varied.frames, plain.frames)
    for v in ph_bodies():  # still rigid
        c = corners(varied, v)
        d = np.linalg.norm(c[:, :, None] - c[:, None, :], axis=-1)
        assert np.max(np.abs(d - d[0])) < 1e-6


def test_anatomy_is_deterministic_per_seed_and_has_no_global_state():
    before = {v: sk.BODY_SIZES[v] for v in sk.CORNER_BODIES}
    a = make_phantom(seed=21, anatomy_sd=0.08, **SMALL)
    other = make_phantom(seed=22, anatomy_sd=0.08, **SMALL)
    plain = make_phantom(seed=21, **SMALL)
    again = make_phantom(seed=21, anatomy_sd=0.08, **SMALL)
    assert _digests(again) == _digests(a)
    assert other.truth["params"]["anatomy"] != a.truth["params"]["anatomy"]
    assert sk.BODY_SIZES == before and sk.DEFAULT_ANATOMY.sizes == before
    assert plain.model.anatomy is sk.DEFAULT_ANATOMY
    # a varied phantom in the same process leaves the next default one untouched
    assert _digests(make_phantom(seed=21, **SMALL)) == _digests(plain)
    with pytest.raises(TypeError):
        a.model.anatomy.sizes[Vertebra.C4] = sk.BODY_SIZES[Vertebra.C5]  # read-only
    assert pickle.loads(pickle.dumps(a.model.anatomy)) == a.model.anatomy


def test_anatomy_sd_out_of_range_is_a_usage_error():
    with pytest.raises(ParameterError, match="^anatomy_sd must"):
        make_phantom(anatomy_sd=0.5, **SMALL)
    with pytest.raises(ParameterError, match="^anatomy_sd must"):
        make_phantom(anatomy_sd=-0.1, **SMALL)


def test_cli_anatomy_sd(tmp_path):
    out = tmp_path / "varied"
    assert main(["phantom", str(out), "--size", "160", "--frames", "4", "--anatomy-sd", "0.1"]) == 0
    params = json.loads((out / "truth.json").read_text())["params"]
    assert params["anatomy_sd"] == 0.1
    assert params["anatomy"]["bodies"]["C4"]["depth_mm"] != sk.BODY_SIZES[Vertebra.C4].depth_mm


def test_coded_options_are_str_enums_whose_values_are_written(tmp_path):
    tiny = {"rows": 128, "cols": 128, "frames": 4, "seed": 4}
    by_member = make_phantom(
        curve=Curve.KYPHOTIC,
        facing=Facing.LEFT,
        photometric=Photometric.MONOCHROME1,
        calibration=Calibration.IMAGER_PIXEL_SPACING,
        transfer_syntax=TransferSyntax.RLE,
        frame_timing=FrameTiming.FRAME_TIME_VECTOR,
        **tiny,
    )
    by_value = make_phantom(
        curve="kyphotic",
        facing="left",
        photometric="MONOCHROME1",
        calibration="ImagerPixelSpacing",
        transfer_syntax="rle",
        frame_timing="FrameTimeVector",
        **tiny,
    )
    a = write_phantom(by_member, tmp_path / "a")
    b = write_phantom(by_value, tmp_path / "b")
    for key in ("study", "truth", "landmarks"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    params = json.loads(a["truth"].read_text())["params"]
    assert {k: params[k] for k in ("curve", "facing", "photometric", "calibration")} == {
        "curve": "kyphotic",
        "facing": "left",
        "photometric": "MONOCHROME1",
        "calibration": "ImagerPixelSpacing",
    }
    assert (params["transfer_syntax"], params["frame_timing"]) == ("rle", "FrameTimeVector")
    ds = pydicom.dcmread(a["study"])
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert "ImagerPixelSpacing" in ds and "PixelSpacing" not in ds
    assert ds.FrameIncrementPointer == 0x00181065 and list(ds.PatientOrientation) == ["P", "F"]
    assert tuple(sk.CURVES) == tuple(c.value for c in Curve)


@pytest.mark.parametrize(("value", "spacing"), [("0.25", [0.25, 0.25]), ("0.3,0.25", [0.3, 0.25])])
def test_cli_mm_per_px_is_one_number_or_row_col(tmp_path, value, spacing):
    out = tmp_path / "s"
    assert main(["phantom", str(out), "--size", "128", "--frames", "4", "--mm-per-px", value]) == 0
    assert json.loads((out / "truth.json").read_text())["mm_per_px"] == spacing
    assert [float(v) for v in pydicom.dcmread(out / "study.dcm").PixelSpacing] == spacing


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("0.3mm", "--mm-per-px must be MM or ROW,COL in mm (e.g. 0.3 or 0.3,0.25), got '0.3mm'"),
        ("0.3,", "--mm-per-px must be MM or ROW,COL in mm (e.g. 0.3 or 0.3,0.25), got '0.3,'"),
        ("0.3,0.3,0.3", "--mm-per-px must be MM or ROW,COL in mm (e.g. 0.3 or 0.3,0.25), got '0.3,0.3,0.3'"),
        ("0,0.3", "--mm-per-px must be one or two positive numbers (row, column), got (0.0, 0.3)"),
        ("5", "--mm-per-px must lie in 0.02..2.0 mm, got 5.0"),
    ],
)
def test_cli_malformed_mm_per_px_is_one_line(tmp_path, capsys, value, line):
    assert main(["phantom", str(tmp_path / "x"), "--mm-per-px", value]) == 2
    assert capsys.readouterr().err.strip() == f"dmx: error: {line}"
    assert not (tmp_path / "x").exists()

"""Loading studies: conformance files (pydicom's bundled set), pixel values, series, video, bad input.

The shared corpus's MANIFEST-driven tests are in ``test_io_corpus.py``.
"""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from corpus import PYDICOM_DICOMDIR, pydicom_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dmx.anatomy import CalibrationSource
from dmx.errors import InputError
from dmx.io.dicom import frame_times_ms
from dmx.io.load import load_sequence

# --- synthetic files -----------------------------------------------------------------------------------


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attrs,
) -> Path:
    """Write a small DICOM file (explicit VR little endian) holding ``pixels`` (H x W or T x H x W)."""
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid or "1.2.826.0.1.3680043.8.498.1.1"
    ds.Modality = "RF"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-42"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --- conformance files bundled with pydicom (always present) -------------------------------------------

#: MR_small (64 x 64, int16, PixelSpacing) in every encoding pydicom ships it in: same pixels after loading.
MR_SMALL = {
    "MR_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "MR_small_expb.dcm": "1.2.840.10008.1.2.2",
    "MR_small_padded.dcm": "1.2.840.10008.1.2.1",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
}


@functools.cache
def _load_bundled(name: str):
    return load_sequence(pydicom_file(name))


@pytest.mark.parametrize("name", list(MR_SMALL))
def test_bundled_mr_small_same_pixels_in_every_transfer_syntax(name):
    seq = _load_bundled(name)
    ref = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    assert seq.transfer_syntax == MR_SMALL[name]
    assert seq.frames.shape == (1, 64, 64) and seq.frames.dtype == np.int16 and seq.frames.dtype.isnative
    np.testing.assert_array_equal(seq.frames, _load_bundled("MR_small.dcm").frames)
    np.testing.assert_array_equal(seq.frames[0], ref.pixel_array)  # rescale is identity here
    assert seq.calibration_source is CalibrationSource.PIXEL_SPACING
    np.testing.assert_allclose(seq.mm_per_px, [0.3125, 0.3125])
    assert seq.paths == (pydicom_file(name),)


@pytest.mark.parametrize(
    ("name", "same_as"),
    [
        ("liver_expb_1frame.dcm", "liver_1frame.dcm"),  # big endian vs little endian
        ("rtdose_expb.dcm", "rtdose.dcm"),  # 15 frames, 32 bits: big endian
        ("rtdose_rle.dcm", "rtdose.dcm"),  # 15 frames, 32 bits: RLE
        ("rtdose_rle_1frame.dcm", "rtdose_1frame.dcm"),
    ],
)
def test_bundled_same_pixels_groups(name, same_as):
    a, b = _load_bundled(name).frames, _load_bundled(same_as).frames
    assert a.dtype == b.dtype and a.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_bundled_multiframe_dose_loads_every_frame():
    seq = _load_bundled("rtdose.dcm")
    assert seq.frames.shape == (15, 10, 10) and seq.kind == "multiframe"
    assert len({seq.frames[i].tobytes() for i in range(15)}) > 1  # the frames differ


def test_bundled_deflated_file_loads():
    seq = _load_bundled("image_dfl.dcm")
    assert seq.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert seq.frames.shape == (1, 512, 512) and seq.frames.dtype == np.uint8
    np.testing.assert_array_equal(seq.frames[0], pydicom.dcmread(pydicom_file("image_dfl.dcm")).pixel_array)
    assert seq.calibration_source is CalibrationSource.NONE and seq.mm_per_px is None


def test_file_without_preamble_or_file_meta_loads(tmp_path):
    """ACR-NEMA style: MR_small rewritten with no preamble, no file meta, implicit VR little endian."""
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    path = tmp_path / "acr_nema"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    seq = load_sequence(path)
    assert seq.transfer_syntax == "1.2.840.10008.1.2"
    np.testing.assert_array_equal(seq.frames, _load_bundled("MR_small.dcm").frames)


@pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"])
def test_bundled_files_without_meta_are_read_and_named_when_they_hold_no_image(name):
    with pytest.raises(InputError) as info:
        load_sequence(pydicom_file(name))
    assert str(info.value) == f"{pydicom_file(name)}: no image in this DICOM file (RT Ion Plan Storage)"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("MR_truncated.dcm", "shorter than its header says"),
        ("rtplan.dcm", "no image in this DICOM file (RT Plan Storage)"),
        ("reportsi.dcm", "no image in this DICOM file (Basic Text SR Storage)"),
    ],
)
def test_bundled_bad_file_fails_with_one_clear_line(name, problem):
    path = pydicom_file(name)
    with pytest.raises(InputError) as info:
        load_sequence(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.path == path


@pytest.mark.parametrize(
    "name",
    [
        "DICOMDIR",
        "DICOMDIR-bigEnd",
        "DICOMDIR-implicit",
        "DICOMDIR-nooffset",
        "DICOMDIR-reordered",
        "DICOMDIR-nopatient",
    ],
)
def test_dicomdir_with_several_series_lists_them_and_series_chooses(name):
    path = PYDICOM_DICOMDIR / name
    with pytest.raises(InputError) as info:
        load_sequence(path)
    message = str(info.value)
    assert name in message and "13 series found" in message and "--series" in message
    assert "'Cervical LAT'" in message and "(CR, 1 file" in message and "(MR, 7 files" in message
    assert "\n" not in message
    lat = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.10"
    seq = load_sequence(path, series=lat)
    assert seq.frames.shape == (1, 16, 16)
    assert seq.kind == "dicomdir" and seq.study.series_description == "Cervical LAT"
    assert seq.calibration_source is CalibrationSource.IMAGER_PIXEL_SPACING
    angio = load_sequence(path, series="1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.118")
    assert angio.n_frames == 7
    assert [p.name for p in angio.paths] == ["4558", "4528", "4588", "4467", "4618", "4678", "4648"]


@pytest.mark.parametrize("rel", ["DICOMDIR-empty.dcm", "TINY_ALPHA/DICOMDIR"])
def test_dicomdir_without_images_fails_cleanly(rel):
    with pytest.raises(InputError, match="no images") as info:
        load_sequence(PYDICOM_DICOMDIR / rel)
    assert Path(rel).name in str(info.value)


def test_unknown_series_is_an_error_listing_the_available_ones():
    with pytest.raises(InputError, match="series 1.2.3 not found; available: .*Cervical LAT"):
        load_sequence(PYDICOM_DICOMDIR / "DICOMDIR", series="1.2.3")


# --- synthetic series ----------------------------------------------------------------------------------


def test_single_frame_series_is_ordered_by_instance_number(tmp_path):
    numbers = [3, 1, 5, 2, 4]
    names = ["b.dcm", "e.dcm", "a.dcm", "d.dcm", "c.dcm"]  # name order differs from instance order
    for n, name in zip(numbers, names, strict=True):
        write_image(tmp_path / name, np.full((4, 6), n * 10, np.uint16), InstanceNumber=n)
    (tmp_path / "notes.txt").write_text("not an image")
    seq = load_sequence(tmp_path)
    assert seq.frames[:, 0, 0].tolist() == [10, 20, 30, 40, 50]
    assert [p.name for p in seq.paths] == ["e.dcm", "d.dcm", "b.dcm", "c.dcm", "a.dcm"]
    assert seq.kind == "dicom-series" and seq.frames.dtype == np.uint16


def test_frames_without_instance_number_are_ordered_by_acquisition_time(tmp_path):
    times = ["120003", "120001", "120002"]
    for i, t in enumerate(times):
        write_image(tmp_path / f"f{i}.dcm", np.full((2, 2), int(t[-1]), np.uint8), AcquisitionTime=t)
    assert load_sequence(tmp_path).frames[:, 0, 0].tolist() == [1, 2, 3]


def test_mixed_series_is_an_error_listing_both_unless_one_is_chosen(tmp_path):
    for i in range(3):
        write_image(
            tmp_path / f"a{i}.dcm",
            np.full((4, 4), i, np.uint8),
            series_uid="1.2.3.100",
            InstanceNumber=i + 1,
            SeriesDescription="lateral cine",
        )
    for i in range(2):
        write_image(
            tmp_path / f"b{i}.dcm", np.full((4, 4), 9, np.uint8), series_uid="1.2.3.200", InstanceNumber=i + 1
        )
    with pytest.raises(InputError) as info:
        load_sequence(tmp_path)
    message = str(info.value)
    assert "2 series found" in message
    assert "1.2.3.100 (RF, 3 files, 'lateral cine')" in message and "1.2.3.200 (RF, 2 files)" in message
    assert "Doe" not in message  # no patient name
    assert load_sequence(tmp_path, series="1.2.3.100").n_frames == 3
    assert load_sequence(tmp_path, series="1.2.3.200").n_frames == 2


def test_series_of_different_frame_sizes_is_refused(tmp_path):
    write_image(tmp_path / "a.dcm", np.zeros((4, 4), np.uint8), InstanceNumber=1)
    write_image(tmp_path / "b.dcm", np.zeros((4, 5), np.uint8), InstanceNumber=2)
    with pytest.raises(InputError, match=r"b\.dcm: frame size 4 x 5 differs"):
        load_sequence(tmp_path)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="empty folder"):
        load_sequence(tmp_path)
    with pytest.raises(InputError, match="nothing.dcm: file not found"):
        load_sequence(tmp_path / "nothing.dcm")
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="no images found"):
        load_sequence(tmp_path)


def test_non_dicom_file_is_a_clean_error(tmp_path):
    p = tmp_path / "scan.dcm"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    with pytest.raises(InputError, match=r"scan\.dcm: not a DICOM file"):
        load_sequence(p)


def test_truncated_native_pixel_data_is_named(tmp_path):
    p = write_image(tmp_path / "cut.dcm", np.zeros((5, 32, 32), np.uint16))
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"cut\.dcm: .*pixel data shorter than its header says"):
        load_sequence(p)


def test_file_without_pixel_data(tmp_path):
    p = write_image(tmp_path / "nopix.dcm", np.zeros((4, 4), np.uint8))
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(InputError, match="no pixel data"):
        load_sequence(p)


# --- pixel values and dtypes ---------------------------------------------------------------------------


def test_rescale_keeps_integers_and_inverts_monochrome1(tmp_path):
    raw = np.array([[0, 1, 4095], [100, 2000, 7]], np.uint16)
    p = write_image(
        tmp_path / "r.dcm",
        raw,
        photometric="MONOCHROME1",
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-100,
    )
    seq = load_sequence(p)
    assert seq.frames.dtype == np.int16
    rescaled = raw.astype(int) * 2 - 100
    lo, hi = -100, 2 * 4095 - 100
    np.testing.assert_array_equal(seq.frames[0], lo + hi - rescaled)


def test_fractional_rescale_gives_float32(tmp_path):
    raw = np.array([[0, 1], [2, 255]], np.uint8)
    seq = load_sequence(write_image(tmp_path / "f.dcm", raw, RescaleSlope=0.5, RescaleIntercept=1))
    assert seq.frames.dtype == np.float32
    np.testing.assert_allclose(seq.frames[0], raw * 0.5 + 1)


def test_signed_pixels_stay_signed(tmp_path):
    raw = np.array([[-1000, 0], [5, 1200]], np.int16)
    seq = load_sequence(write_image(tmp_path / "s.dcm", raw, bits_stored=12))
    assert seq.frames.dtype == np.int16
    np.testing.assert_array_equal(seq.frames[0], raw)


def test_long_cine_is_decoded_into_one_array(tmp_path):
    frames = (np.arange(40 * 128 * 128, dtype=np.uint32) % 4096).astype(np.uint16).reshape(40, 128, 128)
    p = write_image(tmp_path / "cine.dcm", frames, bits_stored=12, FrameTime="40")
    tracemalloc.start()
    try:
        seq = load_sequence(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(seq.frames, frames)
    assert seq.frames.dtype == np.uint16
    assert peak < 1.5 * frames.nbytes  # about one copy of the frames, not two
    np.testing.assert_allclose(seq.frame_time_ms, 40.0)


@pytest.mark.parametrize(
    ("dtype", "lo", "hi"), [(np.uint8, 0, 256), (np.uint16, 0, 65536), (np.int16, -32768, 32768)]
)
def test_native_frames_read_straight_into_the_array_equal_pydicoms_decoding(
    tmp_path, monkeypatch, dtype, lo, hi
):
    from dmx.io import dicom

    rng = np.random.default_rng(7)
    frames = rng.integers(lo, hi, (5, 33, 17)).astype(dtype)  # odd sizes: no padding assumed per frame
    p = write_image(tmp_path / "cine.dcm", frames, FrameTime="40")
    used = []
    real = dicom._read_native
    monkeypatch.setattr(dicom, "_read_native", lambda *a: used.append(real(*a)) or used[-1])
    fast = load_sequence(p).frames
    assert used == [True]  # the direct read was taken
    monkeypatch.setattr(dicom, "_read_native", lambda *a: False)
    slow = load_sequence(p).frames  # pydicom's iter_pixels
    assert fast.dtype == slow.dtype == dtype
    np.testing.assert_array_equal(fast, frames)
    np.testing.assert_array_equal(fast, slow)


def test_native_direct_read_is_not_used_where_values_change(tmp_path, monkeypatch):
    from dmx.io import dicom

    used = []
    real = dicom._read_native
    monkeypatch.setattr(dicom, "_read_native", lambda *a: used.append(real(*a)) or used[-1])
    raw = np.array([[[0, 4095], [5000, 70]]], np.uint16)  # 12 bits stored: 5000 has bits above them
    seq = load_sequence(write_image(tmp_path / "a.dcm", raw, bits_stored=12))
    assert seq.frames[0, 1, 0] == 5000 & 0xFFF  # the bits above BitsStored dropped, as pydicom decodes
    mono1 = load_sequence(write_image(tmp_path / "b.dcm", raw.astype(np.uint8), photometric="MONOCHROME1"))
    assert mono1.frames[0, 0, 0] == 255  # inverted
    assert used == [False, False]


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"Rows": 60000}, "60000 x 16 pixels per frame"),
        ({"NumberOfFrames": "100000"}, "100000 frames"),
        ({"Rows": 8000, "Columns": 8000, "NumberOfFrames": "9000"}, "GB decoded"),
    ],
)
def test_absurd_dimensions_are_refused_before_allocation(tmp_path, attrs, match):
    p = write_image(tmp_path / "huge.dcm", np.zeros((2, 16, 16), np.uint16), **attrs)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match) as info:
            load_sequence(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "refused" in str(info.value)
    assert peak < 20 * 1024**2


# --- frame time ----------------------------------------------------------------------------------------


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_frame_time_sources():
    w: list[str] = []
    np.testing.assert_allclose(frame_times_ms(_ds(FrameTime="40"), 3, w), [40, 40, 40])
    np.testing.assert_allclose(frame_times_ms(_ds(CineRate=25), 2, w), [40, 40])
    ftv = _ds(FrameTimeVector=[0, 30, 40, 50], FrameIncrementPointer=0x00181065)
    np.testing.assert_allclose(frame_times_ms(ftv, 4, w), [30, 40, 50, 50])
    assert w == []
    assert frame_times_ms(_ds(FrameTime="0"), 3, w) is None
    assert any("FrameTime (0018,1063)" in m for m in w)
    w.clear()
    assert frame_times_ms(_ds(FrameTimeVector=[0, 30]), 4, w) is None
    assert any("FrameTimeVector" in m for m in w)


# --- video ---------------------------------------------------------------------------------------------


def _write_video(path: Path, n: int = 12, fps: float = 25.0) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, i * 4 : i * 4 + 8] = (200, 200, 200)
        writer.write(frame)
    writer.release()
    return path


def test_video_loads_grey_and_uncalibrated(tmp_path):
    p = _write_video(tmp_path / "dmx.avi")
    seq = load_sequence(p)
    assert seq.frames.shape == (12, 48, 64) and seq.frames.dtype == np.uint8
    assert seq.calibration_source is CalibrationSource.NONE and seq.mm_per_px is None
    np.testing.assert_allclose(seq.frame_time_ms, 40.0)
    # the bright bar moves 4 px per frame
    assert seq.frames[0, 20, 4] > 150 and seq.frames[5, 20, 24] > 150 and seq.frames[0, 20, 40] < 50
    user = load_sequence(p, mm_per_px=0.2)
    assert user.calibration_source is CalibrationSource.USER and user.mm_per_px == (0.2, 0.2)


def test_broken_video_is_a_clean_error(tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(b"definitely not a video" * 10)
    with pytest.raises(InputError, match=r"broken\.mp4: "):
        load_sequence(p)


def test_colour_frames_are_converted_to_grey(tmp_path):
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0] = 100
    rgb[1, ..., 1] = 200
    p = write_image(tmp_path / "rgb.dcm", rgb[..., 0], photometric="RGB")
    ds = pydicom.dcmread(p)
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = 4, 4
    ds.NumberOfFrames = 2
    ds.PixelData = rgb.tobytes()
    ds.save_as(p)
    seq = load_sequence(p)
    assert seq.frames.shape == (2, 4, 4) and seq.frames.dtype == np.uint8
    assert seq.frames[0, 0, 0] == round(100 * 0.299) and seq.frames[1, 0, 0] == round(
        100 * 0.299 + 200 * 0.587
    )
    assert any("converted to grey" in w for w in seq.warnings)


def test_bits_above_bits_stored_are_not_part_of_the_value(tmp_path):
    raw = np.array([[0, 255, 0x0100 | 7]], np.uint16)  # the last value has junk above 8 stored bits
    seq = load_sequence(write_image(tmp_path / "b.dcm", raw, bits_stored=8))
    assert seq.frames.dtype == np.uint8
    assert seq.frames[0].tolist() == [[0, 255, 7]]  # masked to the 8 stored bits, no wrap-around


def test_rescale_in_the_shared_functional_group(tmp_path):
    pvt = Dataset()
    pvt.RescaleSlope = 1
    pvt.RescaleIntercept = -1024
    shared = Dataset()
    shared.PixelValueTransformationSequence = [pvt]
    p = write_image(
        tmp_path / "enh.dcm",
        np.array([[0, 2000]], np.uint16),
        bits_stored=12,
        SharedFunctionalGroupsSequence=[shared],
    )
    seq = load_sequence(p)
    assert seq.frames.dtype == np.int16 and seq.frames[0].tolist() == [[-1024, 976]]


def test_series_option_on_a_single_file_must_match(tmp_path):
    p = write_image(tmp_path / "one.dcm", np.zeros((2, 2), np.uint8), series_uid="1.2.3.7")
    assert load_sequence(p, series="1.2.3.7").n_frames == 1
    with pytest.raises(InputError, match="series 9.9 not found; this file holds series 1.2.3.7"):
        load_sequence(p, series="9.9")


@pytest.mark.parametrize(
    "head", [b"\x00\x00\x00\x01Bud1" + bytes(200), b"\x00\x00\x00\x00\x04\x00\x00\x00" + b"\xff" * 200]
)
def test_binary_files_starting_with_zeros_are_not_dicom(tmp_path, head):
    p = tmp_path / "blob"
    p.write_bytes(head)
    with pytest.raises(InputError, match=r"blob: not a (readable )?DICOM file"):
        load_sequence(p)

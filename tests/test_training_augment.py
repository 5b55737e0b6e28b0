"""The heatmap network's training augmentation (no PyTorch needed: numpy and OpenCV only)."""

import numpy as np
import pytest

from dmx.training.heatmap import _augment, _overlaps


def test_overlapping_structures_change_the_image_not_the_corners():
    rng = np.random.default_rng(0)
    img = (rng.random((256, 256)) * 255).astype(np.uint8)
    corners = np.array(
        [
            [[100.0 + 20 * b, 100.0], [120 + 20 * b, 100], [120 + 20 * b, 118], [100 + 20 * b, 118]]
            for b in range(6)
        ]
    )
    plain_x, plain_c = _augment(np.random.default_rng(3), img, corners, 112)
    again_x, again_c = _augment(np.random.default_rng(3), img, corners, 112, 0.0)
    np.testing.assert_array_equal(plain_x, again_x)  # the default draws nothing more
    with_x, with_c = _augment(np.random.default_rng(3), img, corners, 112, 1.0)
    np.testing.assert_array_equal(with_c, plain_c)  # geometry drawn first: the targets stay
    assert with_x.shape == plain_x.shape and with_x.dtype == np.float32
    assert not np.array_equal(with_x, plain_x)


def test_overlaps_add_bounded_structures_of_either_sign():
    flat = np.full((112, 112), 0.5, np.float32)
    signs = set()
    for seed in range(20):
        out = _overlaps(np.random.default_rng(seed), flat.copy())
        d = out - flat
        assert np.abs(d).max() > 0.02  # something was drawn
        assert np.abs(d).max() <= 3 * 0.8  # at most three structures of 0.4 plus a rim of 0.4 each
        signs.add(float(np.sign(d[np.abs(d).argmax() // 112, np.abs(d).argmax() % 112])))
    assert signs == {-1.0, 1.0}


def test_family_share_draws_mixed_families_and_leaves_the_first_recipe_as_it_was():
    from dmx.training.heatmap import FAMILIES, heatmap_specs

    first = heatmap_specs(60)
    again = heatmap_specs(60, family_share=(0.5, 0.5))
    # the first recipe (one half each) draws nothing more: the shipped network's data stays reproducible
    assert [kw["appearance"] for kw in first] == [kw["appearance"] for kw in again]
    assert [kw["seed"] for kw in first] == list(range(400000, 400060))
    mixed = heatmap_specs(60, seed=27, first_seed=420000, family_share=(0.25, 0.95))
    assert [kw["seed"] for kw in mixed] == list(range(420000, 420060))
    counts = [len(kw["appearance"].families) for kw in mixed]
    # one in 64 phantoms takes every family at one half each; with shares up to 0.95 about one in seven
    assert sum(c == len(FAMILIES) for c in counts) >= 3
    assert sum(c == len(FAMILIES) for c in (len(kw["appearance"].families) for kw in first)) <= 2


@pytest.mark.parametrize("share", ["0.5", "0.9,0.2", "a,b", "0.2,1.5"])
def test_a_bad_family_share_is_one_usage_error(share, tmp_path, capsys):
    from dmx.training.heatmap import main

    with pytest.raises(SystemExit) as exit_:
        main(["data", "--phantoms", "1", "--out", str(tmp_path / "d.npz"), "--family-share", share])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--family-share" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "d.npz").exists()


def _turn_deg(corners: np.ndarray) -> np.ndarray:
    """Each body's superior endplate direction (first corner to second), degrees, folded to -90..90."""
    d = corners[:, 1] - corners[:, 0]
    a = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    return (a + 90) % 180 - 90


def test_the_crops_are_turned_within_the_rotation_range_asked():
    img = np.zeros((256, 256), np.uint8)
    corners = np.array(
        [
            [[100.0 + 20 * b, 100.0], [120 + 20 * b, 100], [120 + 20 * b, 118], [100 + 20 * b, 118]]
            for b in range(6)
        ]
    )

    def turns(rotate_deg):
        return np.array(
            [
                _turn_deg(_augment(np.random.default_rng(s), img, corners, 112, 0.0, rotate_deg)[1])[0]
                for s in range(200)
            ]
        )

    default = turns(20.0)
    assert np.abs(default).max() <= 20.0 + 1e-3 and np.abs(default).max() > 18.0
    # the default draws as the shipped recipe did (a rotation range of 20 degrees)
    np.testing.assert_array_equal(
        _augment(np.random.default_rng(5), img, corners, 112)[1],
        _augment(np.random.default_rng(5), img, corners, 112, 0.0, 20.0)[1],
    )
    wide = turns(40.0)
    assert np.abs(wide).max() <= 40.0 + 1e-3 and (np.abs(wide) > 25.0).sum() >= 40
    assert np.abs(turns(0.0)).max() < 1e-3


def test_the_data_holds_each_bodys_share_in_the_field_and_field_targets_keep_a_c7_under_the_shoulders(
    tmp_path,
):
    """Session 60: the phantom's visibility counts a body any occluder overlaps as hidden, so C7 under the
    all-family shoulders (plainly outlined there) was never a training target. The data file now holds each
    body's share inside the exposed field too, and ``--targets field`` makes such a C7 a target."""
    from dmx.training.heatmap import heatmap_specs, make_data, target_bodies

    kw = heatmap_specs(1, seed=60, first_seed=440000, family_share=(1.0, 1.0))[0]
    out = tmp_path / "d.npz"
    make_data(1, out, workers=1, seed=60, first_seed=440000, family_share=(1.0, 1.0))
    d = np.load(out)
    assert kw["appearance"].families  # every family drawn, the shoulders among them
    assert d["in_field"].shape == d["visibility"].shape == (d["images"].shape[0], 6)
    # the field's share is never below the visible share (what is outside the field is hidden too)
    assert np.all(d["in_field"] >= d["visibility"] - 1e-6)
    by_sight, by_field = target_bodies(d, "visibility"), target_bodies(d, "field")
    assert not by_sight[:, 5].any()  # C7: hidden under the shoulders by the phantom's visibility
    assert by_field[:, 5].all()  # inside the field on every frame: a target
    assert np.array_equal(by_field, d["in_field"] >= 0.7)
    with pytest.raises(SystemExit, match="no in_field"):
        target_bodies({"visibility": d["visibility"]}, "field")

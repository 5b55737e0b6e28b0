#!/usr/bin/env bash
# Regenerate the bundled sample studies (synthetic phantoms, no patient data) from the repository root:
#     bash sample_data/regenerate.sh
# The generator is deterministic: the same commands give byte-identical files.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DMX="${DMX:-python3 -m dmx}"

# A stable lordotic neck, calibrated with PixelSpacing, lossy JPEG like many real cines.
$DMX phantom sample_data/lordotic_stable --seed 1 --curve lordotic \
    --calibration PixelSpacing --transfer-syntax jpeg --jpeg-quality 90

# An S-shaped neck (upper part kyphotic) with 4 mm of extra translation at C4-C5,
# calibrated at the detector (ImagerPixelSpacing) with the magnification factor (ERMF).
$DMX phantom sample_data/s_curve_unstable --seed 2 --curve s_upper_kyphotic \
    --unstable C4-C5 --translation-mm 4 \
    --calibration ImagerPixelSpacing+ERMF --magnification 1.15 --transfer-syntax jpeg --jpeg-quality 90

# A kyphotic neck facing the image's left, MONOCHROME1, 12 fps, non-square, RLE lossless,
# calibrated only at the detector (ImagerPixelSpacing without ERMF: mm overstated by 1.15).
$DMX phantom sample_data/kyphotic_left_mono1 --seed 3 --curve kyphotic --facing left \
    --photometric MONOCHROME1 --size 256x320 --frames 40 --fps 12 --frame-timing FrameTimeVector \
    --calibration ImagerPixelSpacing --transfer-syntax rle

"""Synthetic lateral cervical DMX studies with exact ground truth (the project's validation instrument).

>>> from dmx.phantom import make_phantom, write_phantom
>>> p = make_phantom(seed=1, frames=60, unstable_mm={"C4-C5": 4.0})  # doctest: +SKIP
>>> write_phantom(p, "out/")  # doctest: +SKIP
>>> q = make_phantom(seed=1, appearance="cortical,posterior")  # doctest: +SKIP

``appearance`` draws looks of named :class:`Family` groups (see :mod:`dmx.phantom.appearance`).
"""

from dmx.phantom.appearance import Appearance, Family, draw_appearance, parse_families
from dmx.phantom.generator import (
    SCHEMA,
    Phantom,
    PhantomModel,
    body_mask,
    make_phantom,
    parse_level_values,
    render_structure,
    write_phantom,
)
from dmx.phantom.options import Calibration, Curve, Facing, FrameTiming, Photometric, TransferSyntax
from dmx.phantom.truth import truth_corners

__all__ = [
    "SCHEMA",
    "Appearance",
    "Calibration",
    "Curve",
    "Facing",
    "Family",
    "FrameTiming",
    "Phantom",
    "PhantomModel",
    "Photometric",
    "TransferSyntax",
    "body_mask",
    "draw_appearance",
    "make_phantom",
    "parse_families",
    "parse_level_values",
    "render_structure",
    "truth_corners",
    "write_phantom",
]

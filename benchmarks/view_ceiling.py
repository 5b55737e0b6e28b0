"""How many of C3-C6 the learned network outlines right in any one view of a frame (issue #12, session 56).

For every phantom of a set, on ten views of the reference frame (as given; inverted; turned a quarter either
way, either polarity; turned an eighth either way, either polarity: ``dmx.detect.VIEWS``, ``LEANING_VIEWS``),
the network at the calibrated size with the edge refinement (:func:`dmx.detect.detector.run_heatmap`), each
outline mapped back to the frame and compared with the true corners of its own level. Per study: the view
holding the most of C3-C6 within 3 px at any confidence, how many, and the most at confidence 0.5 or more in
any view; then the totals. This is the ceiling of the network and its outline before the detector chooses a
view and checks the levels (``benchmarks/heldout.py detect`` gives what ``dmx analyze`` reports): from a
single view the detector cannot report more, whatever its checks.

    PYTHONPATH=. python benchmarks/view_ceiling.py --family all --n 20 --generator 14545 --first 1450000 \
        --cache DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout import RIGHT_PX, _reference, _specs  # noqa: E402  (a set drawn as heldout.py draws it)

from dmx.anatomy import BODIES  # noqa: E402

#: C3-C6, the bodies #12's main target counts.
COUNTED = BODIES[1:5]


def right_per_view(image: np.ndarray, truth: dict, mpp: float, net, model) -> dict[str, tuple[int, int]]:
    """Per view (its words; ``as given``), how many of C3-C6 the network outlines within ``RIGHT_PX`` (as
    ``benchmarks/heldout.py`` counts a body right) of their own level's truth: (at any confidence, at
    confidence >= 0.5)."""
    from dmx.detect import LEANING_VIEWS, VIEWS, _View
    from dmx.detect.detector import HEATMAP_THRESHOLD, run_heatmap

    out = {}
    for view in (_View(False, 0, "as given"), *VIEWS, *LEANING_VIEWS):
        res = run_heatmap(
            view.image(image), model, net, mm_per_px=mpp
        )  # square pixels: the same in every view
        right = [
            b.confidence
            for b in res.bodies
            if b.corners_px is not None
            and b.vertebra in COUNTED
            and b.vertebra in truth
            and np.hypot(*(view.back(b.corners_px, image.shape) - np.asarray(truth[b.vertebra])).T).max()
            <= RIGHT_PX
        ]
        out[view.words] = (len(right), sum(c >= HEATMAP_THRESHOLD for c in right))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="all")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--generator", type=int, required=True)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--cache", help="keep the rendered frames here (benchmarks/heldout.py's cache)")
    args = p.parse_args(argv)

    from dmx.detect import _net_and_model

    net, model = _net_and_model(None)
    total_any = total_conf = 0
    for kw in _specs(args):
        image, truth, mpp = _reference(kw, args.cache)
        views = right_per_view(image, truth, mpp, net, model)
        best = max(views, key=lambda w: views[w][0])
        most_conf = max(n for _, n in views.values())
        total_any += views[best][0]
        total_conf += most_conf
        print(f"{kw['seed']}  C3-C6 right in one view: {views[best][0]} ({best[:60]}), ", end="")
        print(f"at confidence >= 0.5: {most_conf}", flush=True)
    n = len(COUNTED) * args.n
    print(
        f"{args.family}: C3-C6 within {RIGHT_PX:g} px of their level in the best view: {total_any} of {n} at "
        f"any confidence, {total_conf} at confidence >= 0.5 (the network and its outline; the detector "
        "reports fewer)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How many of C3-C6 the learned network outlines right in any one view of a frame (issue #12, session 56).

For every phantom of a set, on ten views of the reference frame (as given; inverted; turned a quarter either
way, either polarity; turned an eighth either way, either polarity: ``dmx.detect.VIEWS``, ``LEANING_VIEWS``),
the network at the calibrated size with the edge refinement (:func:`dmx.detect.detector.run_heatmap`), each
outline mapped back to the frame and compared with the true corners of its own level. Per study: the view
holding the most of C3-C6 within 3 px at any confidence, how many, and the most at confidence 0.5 or more in
any view, with the outlines of C3-C6 at confidence 0.5 or more *beyond* 3 px in that view (what a detector
reporting that view as it stands would get wrong); and the same two counts in the view the network itself
would choose, knowing no truth (the most of its C2-C7 at confidence 0.5 or more, then the highest sum of their
confidences): how far a detector taking the network's best view as it stands would get. Then the totals.
This is the ceiling of the network and its outline before the detector chooses a
view and checks the levels (``benchmarks/heldout.py detect`` gives what ``dmx analyze`` reports): from a
single view the detector cannot report more, whatever its checks.

    PYTHONPATH=. python benchmarks/view_ceiling.py --family all --n 20 --generator 14545 --first 1450000 \
        --cache DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout import RIGHT_PX, _reference, _specs  # noqa: E402  (a set drawn as heldout.py draws it)

from dmx.anatomy import BODIES  # noqa: E402

#: C3-C6, the bodies #12's main target counts.
COUNTED = BODIES[1:5]


class ViewCount(NamedTuple):
    """One view's outlines (:func:`right_per_view`)."""

    right: int  #: C3-C6 within RIGHT_PX of their own level, at any confidence
    right_sure: int  #: of those, at confidence >= 0.5
    wrong_sure: int  #: C3-C6 at confidence >= 0.5 beyond RIGHT_PX (or of a level not in the image)
    sure: int  #: C2-C7 at confidence >= 0.5, without the truth
    sure_sum: float  #: the sum of their confidences


def right_per_view(image: np.ndarray, truth: dict, mpp: float, net, model) -> dict[str, ViewCount]:
    """Per view (its words; ``as given``), how many of C3-C6 the network outlines within ``RIGHT_PX`` (as
    ``benchmarks/heldout.py`` counts a body right) of their own level's truth: (at any confidence, at
    confidence >= 0.5), how many it outlines at confidence >= 0.5 beyond ``RIGHT_PX`` of it (a body of
    that level not in the image counts as beyond), and, without the truth, how many of C2-C7 it outlines at
    confidence >= 0.5 and the sum of their confidences."""
    from dmx.detect import LEANING_VIEWS, VIEWS, _View
    from dmx.detect.detector import HEATMAP_THRESHOLD, run_heatmap

    out = {}
    for view in (_View(False, 0, "as given"), *VIEWS, *LEANING_VIEWS):
        res = run_heatmap(
            view.image(image), model, net, mm_per_px=mpp
        )  # square pixels: the same in every view
        right, wrong = [], 0
        sure = [
            b.confidence for b in res.bodies if b.corners_px is not None and b.confidence >= HEATMAP_THRESHOLD
        ]
        for b in res.bodies:
            if b.corners_px is None or b.vertebra not in COUNTED:
                continue
            err = (
                np.hypot(*(view.back(b.corners_px, image.shape) - np.asarray(truth[b.vertebra])).T).max()
                if b.vertebra in truth
                else np.inf
            )
            if err <= RIGHT_PX:
                right.append(b.confidence)
            elif b.confidence >= HEATMAP_THRESHOLD:
                wrong += 1
        out[view.words] = ViewCount(
            len(right),
            sum(c >= HEATMAP_THRESHOLD for c in right),
            wrong,
            len(sure),
            float(sum(sure)),
        )
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
    total_any = total_conf = total_wrong = own_right = own_wrong = 0
    for kw in _specs(args):
        image, truth, mpp = _reference(kw, args.cache)
        views = right_per_view(image, truth, mpp, net, model)
        best = max(views, key=lambda w: views[w].right)
        # the view with the most right at confidence >= 0.5; of equals, the one with the fewest wrong there
        sure = views[min(views, key=lambda w: (-views[w].right_sure, views[w].wrong_sure))]
        # the network's own choice: the most bodies at confidence >= 0.5, then their summed confidence
        own = max(views, key=lambda w: (views[w].sure, views[w].sure_sum))
        total_any += views[best].right
        total_conf += sure.right_sure
        total_wrong += sure.wrong_sure
        own_right += views[own].right_sure
        own_wrong += views[own].wrong_sure
        print(f"{kw['seed']}  C3-C6 right in one view: {views[best].right} ({best[:60]}), ", end="")
        print(
            f"at confidence >= 0.5: {sure.right_sure} (beyond {RIGHT_PX:g} px there: {sure.wrong_sure}); ",
            end="",
        )
        print(
            f"in the network's own choice ({own[:40]}): {views[own].right_sure} right, "
            f"{views[own].wrong_sure} beyond",
            flush=True,
        )
    n = len(COUNTED) * args.n
    print(
        f"{args.family}: C3-C6 within {RIGHT_PX:g} px of their level in the best view: {total_any} of {n} "
        f"at any confidence, {total_conf} at confidence >= 0.5 with {total_wrong} beyond {RIGHT_PX:g} px in "
        "those views (the network and its outline; the detector reports fewer)"
    )
    print(
        f"{args.family}: in the view the network chooses itself (most bodies at confidence >= 0.5): "
        f"{own_right} of {n} right at confidence >= 0.5, {own_wrong} beyond {RIGHT_PX:g} px"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

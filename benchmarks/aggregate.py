"""How long ``dmx aggregate`` takes per study: reading one measurements.json into table rows.

Every document is validated against the schema where the tables read it (``study_rows``:
the blocks in ``dmx.aggregate.TABLE_PARTS``, per-frame series cut to the key frames), so the
cost does not grow with the number of frames. Prints milliseconds per document for the
``s_curve_unstable`` sample (60 frames) and the same document stretched to 600 frames::

    PYTHONPATH=. python benchmarks/aggregate.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import dmx
from dmx.aggregate import study_rows

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "s_curve_unstable"


def stretched(doc: dict[str, Any], factor: int) -> dict[str, Any]:
    """``doc`` with every per-frame array repeated ``factor`` times (and ``frames.count`` to match)."""
    n = doc["frames"]["count"]

    def walk(x: Any) -> Any:
        if isinstance(x, list) and len(x) == n:
            return x * factor
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    out = walk(doc)
    out["frames"]["count"] = n * factor
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="documents timed per case")
    args = parser.parse_args()
    analysis = dmx.analyze(SAMPLE / "study.dcm", landmarks_path=SAMPLE / "landmarks.json")
    doc = json.loads(json.dumps(analysis.measurements))
    for factor in (1, 10):
        d = stretched(doc, factor)
        text = json.dumps(d)
        study_rows(json.loads(text))  # first call builds the validator
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            parsed = json.loads(text)
        t1 = time.perf_counter()
        for _ in range(args.repeat):
            rows = study_rows(parsed)
        t2 = time.perf_counter()
        parse_ms, rows_ms = ((t1 - t0) * 1000 / args.repeat, (t2 - t1) * 1000 / args.repeat)
        print(
            f"{d['frames']['count']:4d} frames, {len(text) / 1e6:.2f} MB: parse {parse_ms:6.1f} ms, "
            f"validate + {len(rows)} rows {rows_ms:6.1f} ms per document"
        )


if __name__ == "__main__":
    main()

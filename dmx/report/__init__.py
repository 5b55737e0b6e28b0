"""The per-patient HTML report (and its PDF print): one self-contained file a clinician can trust.

>>> from dmx.report import write_report
>>> write_report(analysis, "out/report.html")  # doctest: +SKIP
"""

from dmx.report.pdf import find_browser, print_to_pdf
from dmx.report.render import render_report, write_report
from dmx.report.wording import Verdict, thresholds, verdict

__all__ = [
    "Verdict",
    "find_browser",
    "print_to_pdf",
    "render_report",
    "thresholds",
    "verdict",
    "write_report",
]

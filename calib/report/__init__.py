"""The HTML calibration report: one self-contained file that shows why each signal was kept,
zeroed or flipped (summary, signal table, plots, proposed spec, episode browser).

``write_report(store, out_path, *, runs=None, analysis=None, spec=None, mode=None, config=None)``
is the entry point that ``calib report`` and ``calib analyze --html`` call. See docs/report.md.
"""

from calib.report.config import ReportConfig
from calib.report.render import ReportResult, build_report, load_analysis, write_report

__all__ = ["ReportConfig", "ReportResult", "build_report", "load_analysis", "write_report"]

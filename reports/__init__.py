"""Tables, figures and a Markdown/HTML report from a results directory; reads CSV, JSON and PNG only.

``python -m reports RESULTS_DIR`` writes ``RESULTS_DIR/report/``; ``build_report`` does the same from code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from reports.load import ReportInputError, load

REPORT_DIR = "report"

__all__ = ["REPORT_DIR", "ReportInputError", "build_report"]


def build_report(results_dir: Path, out_dir: Path | None = None, checkpoint: Callable[[], None] = lambda: None) -> Path:
    """Write the report of ``results_dir``; return its directory (``results_dir/report`` or ``out_dir``).

    The report holds ``report.md``, a self-contained ``report.html``, ``tables/*.{csv,md,tex}`` and
    ``figures/*.{png,svg}``. Raises ``ReportInputError`` (one-line message) when ``results_dir`` or its
    ``results.csv`` is missing or empty.
    """
    results = load(Path(results_dir))
    if results.unreadable:
        print(f"warning: {len(results.unreadable)} run(s) left out, their result.json unreadable: "
              f"{', '.join(results.unreadable)}", file=sys.stderr)  # fmt: skip
    if results.gone:
        print(f"warning: {len(results.gone)} run(s) of results.csv left out, their result.json gone: "
              f"{', '.join(results.gone)}", file=sys.stderr)  # fmt: skip
    # imported only now: bad input is reported before matplotlib and seaborn take seconds to load
    from reports.document import write_report

    report_dir = Path(out_dir) if out_dir is not None else results.directory / REPORT_DIR
    return write_report(results, report_dir, checkpoint)

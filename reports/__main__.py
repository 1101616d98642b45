"""``python -m reports RESULTS_DIR``: write RESULTS_DIR/report/ and print where.

Bad input (no such directory, no or an empty results.csv) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.base.errors import OneLineParser, UserError, report
from reports import ReportInputError, build_report


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m reports",
        description="Tables (CSV, Markdown, LaTeX), figures (PNG, SVG), report.md and report.html "
        "from a gan-kd-bench results directory.",
    )
    parser.add_argument("results_dir", type=Path, help="a results directory holding results.csv")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the report (default: RESULTS_DIR/report)"
    )
    try:
        args = parser.parse_args(argv)
        report_dir = build_report(args.results_dir, args.out)
    except UserError as err:  # a missing or unknown argument: one line, as every command of the suite says it
        return report(err)
    except ReportInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a read-only results directory
        print(f"error: cannot write the report: {err}", file=sys.stderr)
        return 2
    print(f"report written to {report_dir} (report.md, report.html, tables/, figures/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whether progress bars may be drawn: only on a terminal. In a log file their carriage returns and cursor
movements (tqdm's nested bars write ``ESC[A``) are noise; there the phases' one-line messages say what happens."""

from __future__ import annotations

import sys


def bars(progress: bool) -> bool:
    """Draw bars: progress is wanted (no ``--quiet``) and stderr is a terminal."""
    return progress and sys.stderr.isatty()

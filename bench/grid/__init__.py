"""The orchestration layer: the grid's spec and presets, its plan of cohorts, and the phases that train, derive,
score and time them. Importing it registers every compression method (``compress``), which the plan reads."""

import compress  # noqa: F401  the methods register themselves

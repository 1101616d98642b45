"""Model families behind one registry: ``build(family, width, ...)`` returns (generator, discriminator).

Adding a family is one module that builds a ``ConditionalGenerator`` subclass and a discriminator and calls
``register_family(Family(...))``, plus its import below.
"""

from __future__ import annotations

from gans.family import (
    FAMILIES,
    ConditionalGenerator,
    Family,
    build,
    check_width,
    families,
    logit_loss,
    register_family,
    width_of,
)

# the families register themselves on import
from gans import dcgan  # noqa: E402,F401  isort: skip
from gans import resnet  # noqa: E402,F401  isort: skip

__all__ = [
    "FAMILIES",
    "ConditionalGenerator",
    "Family",
    "build",
    "check_width",
    "families",
    "logit_loss",
    "register_family",
    "width_of",
]

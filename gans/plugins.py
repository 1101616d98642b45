"""Model families from outside the suite: ``--family FILE.py:NAME`` or ``--family package.module:NAME``.

The module is imported once per process and ``NAME`` (a ``Family``, see ``gans.family``) is registered under its
own name, then checked by the rules the family tests hold every built-in family to (``check_family``): it builds
at two widths, the wider has more parameters, its generator is a ``ConditionalGenerator`` mapping (z, y) to
images of the data's shape in [-1, 1], and its discriminator gives one logit per image. Anything else is one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from bench.base.errors import UserError, first_line
from gans.family import FAMILIES, ConditionalGenerator, Family, register_family

_LOADED: dict[str, Family] = {}  # reference -> its family: each module is imported once per process


class FamilyPluginError(UserError):
    """A --family reference that cannot be imported, or a family that does not keep the contract."""


def is_reference(family: str) -> bool:
    """Whether ``--family`` names a plugin (``FILE.py:NAME``, ``package.module:NAME``) rather than a family."""
    return ":" in family


def load_family(reference: str) -> Family:
    """The family ``reference`` names, imported and registered once."""
    if reference in _LOADED:
        return _LOADED[reference]
    where, _, name = reference.rpartition(":")
    if not where or not name:
        raise FamilyPluginError(f"--family {reference}: expected FILE.py:NAME or package.module:NAME")
    module = _import(where, reference)
    family = getattr(module, name, None)
    if not isinstance(family, Family):
        raise FamilyPluginError(f"--family {reference}: {name} is not a gans.family.Family in {where}")
    if family.name in FAMILIES and FAMILIES[family.name] is not family:
        raise FamilyPluginError(f"--family {reference}: a family named {family.name!r} is registered already")
    if family.name not in FAMILIES:
        register_family(family)
    _LOADED[reference] = family
    return family


def _import(where: str, reference: str):
    try:
        if not where.endswith(".py"):
            return importlib.import_module(where)
        path = Path(where).resolve()
        if not path.is_file():
            raise FamilyPluginError(f"--family {reference}: no such file {where}")
        name = f"gan_kd_bench_family_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        spec.loader.exec_module(module)
        return module
    except FamilyPluginError:
        raise
    except Exception as err:  # any import-time failure of foreign code is the user's to fix, in one line
        raise FamilyPluginError(f"--family {reference}: importing {where} failed: {first_line(err)}") from None


def check_family(family: Family, channels: int, image_size: int, num_classes: int) -> None:
    """Refuse, in one line, a family that breaks the contract on data of this shape (see the module doc)."""
    shape = (channels, image_size, image_size)
    try:
        pairs = [
            family.build(width=w, channels=channels, image_size=image_size, num_classes=num_classes) for w in (16, 32)
        ]
        counts = [sum(p.numel() for p in generator.parameters()) for generator, _ in pairs]
        generator, discriminator = pairs[0]
        z, labels = torch.randn(2, getattr(generator, "nz", 100)), torch.arange(2) % num_classes
        with torch.no_grad():
            images = generator(z, labels) if isinstance(generator, ConditionalGenerator) else None
            logits = discriminator(images, labels) if images is not None and images.shape[1:] == shape else None
    except Exception as err:  # foreign code: whatever it raises is a contract it does not keep
        raise FamilyPluginError(f"family {family.name}: building or running it failed: {first_line(err)}") from None
    problems = [
        (not isinstance(generator, ConditionalGenerator), "its generator is not a gans.family.ConditionalGenerator"),
        (counts[0] >= counts[1], f"width 32 has no more parameters than width 16 ({counts[1]} vs {counts[0]})"),
        (images is None or images.shape[1:] != shape, f"its generator does not make {shape} images"),
        (images is not None and bool((images.abs() > 1).any()), "its images leave [-1, 1]"),
        (logits is None or logits.numel() != 2, "its discriminator does not give one logit per image"),
    ]
    for failed, why in problems:
        if failed:
            raise FamilyPluginError(f"family {family.name} does not fit the suite: {why}")

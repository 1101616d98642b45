"""Distillation objectives behind one registry.

An objective is built by a factory ``(student_channels, teacher_channels) -> nn.Module | None`` whose module
maps ``(student_images, student_features, teacher_images, teacher_features)`` to a scalar loss; the trainer
adds ``kd_weight * loss`` to the generator's GAN loss. ``none`` (scratch) builds nothing and needs no teacher.
Adding an objective is one factory and one ``@register_objective`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from bench.errors import UserError

Factory = Callable[[Sequence[int], Sequence[int]], nn.Module | None]
_OBJECTIVES: dict[str, Factory] = {}


def register_objective(name: str) -> Callable[[Factory], Factory]:
    def wrap(factory: Factory) -> Factory:
        _OBJECTIVES[name] = factory
        return factory

    return wrap


def objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def check_objective(name: str) -> str:
    """Return ``name`` if it is registered, else raise a one-line error listing the choices."""
    if name not in _OBJECTIVES:
        raise UserError(f"unknown distillation objective {name!r}: choose one of {', '.join(objectives())}")
    return name


def build_objective(name: str, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> nn.Module | None:
    """The objective ``name`` for a student/teacher pair with these hidden-layer channel counts."""
    return _OBJECTIVES[check_objective(name)](student_channels, teacher_channels)


from distill import losses  # noqa: E402,F401  (registers the built-in objectives)

__all__ = ["build_objective", "check_objective", "objectives", "register_objective"]

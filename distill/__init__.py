"""Distillation objectives behind one registry.

An objective is built by a factory ``(student_channels, teacher_channels) -> nn.Module | None`` whose module
maps ``(student_images, student_features, teacher_images, teacher_features)`` to a scalar loss; the trainer
adds ``kd_weight * loss`` to the generator's GAN loss. ``none`` (scratch) builds nothing and needs no teacher.
Adding an objective is one factory and one ``@register_objective`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from bench.base.registry import Registry

Factory = Callable[[Sequence[int], Sequence[int]], nn.Module | None]
OBJECTIVES: Registry[Factory] = Registry("distillation objective")
register_objective = OBJECTIVES.register
check_objective = OBJECTIVES.check


def objectives() -> list[str]:
    return OBJECTIVES.names()


def build_objective(name: str, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> nn.Module | None:
    """The objective ``name`` for a student/teacher pair with these hidden-layer channel counts."""
    return OBJECTIVES[name](student_channels, teacher_channels)


from distill import losses  # noqa: E402,F401  (registers the built-in objectives)

__all__ = ["OBJECTIVES", "build_objective", "check_objective", "objectives", "register_objective"]

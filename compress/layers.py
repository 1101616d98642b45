"""Layer kinds that pruning and quantization treat specially, found by shape rather than by family."""

from __future__ import annotations

from torch import nn


def conditional_batch_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every class-conditional batch norm in ``model``: a module holding a ``bn`` batch norm and
    a ``gain`` embedding (one gain per class and channel), as ``gans.resnet.ConditionalBatchNorm2d``."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "gain", None), nn.Embedding) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
    ]

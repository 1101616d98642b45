"""Model families behind one factory: ``build(family, width, ...)`` returns (generator, discriminator)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.errors import UserError
from gans.dcgan import DCGANConfig, Discriminator, Generator, check_width, dcgan_init

FamilyBuilder = Callable[..., tuple[nn.Module, nn.Module]]
_FAMILIES: dict[str, FamilyBuilder] = {}


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Decorator: make ``build(name, ...)`` call the decorated builder."""

    def wrap(fn: FamilyBuilder) -> FamilyBuilder:
        _FAMILIES[name] = fn
        return fn

    return wrap


def families() -> list[str]:
    return sorted(_FAMILIES)


def build(family: str, width: int, **kwargs) -> tuple[nn.Module, nn.Module]:
    """Return a freshly initialised (generator, discriminator) of ``family`` at ``width``."""
    if family not in _FAMILIES:
        raise UserError(f"unknown model family {family!r}: choose one of {', '.join(families())}")
    return _FAMILIES[family](width=width, **kwargs)


@register_family("dcgan")
def build_dcgan(**kwargs) -> tuple[Generator, Discriminator]:
    cfg = DCGANConfig(**kwargs)
    generator, discriminator = Generator(cfg), Discriminator(cfg)
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return generator, discriminator


__all__ = ["DCGANConfig", "Discriminator", "Generator", "build", "check_width", "families", "register_family"]

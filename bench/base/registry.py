"""A name -> entry registry that refuses a duplicate name and answers an unknown one with a one-line error.

Families, objectives, datasets, metrics, executors and latency backends are all registries of this kind, so a
new entry is one registration and every test parametrised over ``names()`` covers it at once. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.base.errors import UserError

T = TypeVar("T")


class DuplicateNameError(ValueError):
    """A second entry under a name already taken: a programming error, raised at import time."""


class Registry(Generic[T]):
    """Entries of one kind (``what``: "model family", "dataset", ...) under unique names, in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise DuplicateNameError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""
        return lambda entry: self.add(name, entry)

    def names(self) -> list[str]:
        return list(self._entries)

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise a one-line ``UserError`` listing the choices."""
        if name not in self._entries:
            raise UserError(f"unknown {self.what} {name!r}: choose one of {', '.join(self._entries)}")
        return name

    def __getitem__(self, name: str) -> T:
        return self._entries[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

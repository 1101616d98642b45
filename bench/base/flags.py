"""Command-line flags declared as data: the command line's own and those each compression method brings.

A ``Flag`` names its option, the settings field it sets and the kind of value it takes; ``bench.cli`` turns every
declared flag into an argparse argument, so a method's flags live in the method's module and the parser is built
from the table. Torch-free.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

INTS, STRS, INT, FLOAT, PATH, SWITCH, CHOICE, TEXT = "ints", "strs", "int", "float", "path", "switch", "choice", "text"
KINDS = (INTS, STRS, INT, FLOAT, PATH, SWITCH, CHOICE, TEXT)


@dataclass(frozen=True)
class Flag:
    """One option: ``--prune-widths`` (``option``) sets ``field`` from a value of ``kind``."""

    option: str
    help: str
    kind: str = TEXT
    field: str | None = None  # the settings field it sets; None: the option's name, dashes as underscores
    choices: tuple[str, ...] = ()  # for CHOICE
    default: object = None  # what argparse stores when the flag is not given (None: "not given")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"flag {self.option}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def dest(self) -> str:
        return self.field or self.option.lstrip("-").replace("-", "_")


def int_list(text: str) -> tuple[int, ...]:
    """``"16,32 64"`` -> ``(16, 32, 64)``."""
    try:
        return tuple(int(item) for item in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def str_list(text: str) -> tuple[str, ...]:
    return tuple(item for item in text.replace(",", " ").split())


def path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


class Joined(argparse.Action):
    """A list flag given as one comma-separated word or as several words (``--seeds 1 2`` = ``--seeds 1,2``).
    Every list flag refuses an empty list and a value given twice alike (a repeat is a typo, not a request)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = tuple(item for value in values for item in value)
        if not items:
            parser.error(f"{option_string}: give at least one value")
        repeated = list(dict.fromkeys(item for item in items if items.count(item) > 1))
        if repeated:
            parser.error(f"{option_string}: {', '.join(map(str, repeated))} given more than once")
        setattr(namespace, self.dest, items)


_LIST_TYPES: dict[str, Callable[[str], tuple]] = {INTS: int_list, STRS: str_list}
_TYPES: dict[str, Callable[[str], object]] = {INT: int, FLOAT: float, PATH: path, TEXT: str}


def add_flag(group: argparse._ActionsContainer, flag: Flag) -> None:
    """Add ``flag`` to an argparse parser or group."""
    common = {"dest": flag.dest, "help": flag.help, "default": flag.default}
    if flag.kind != SWITCH:
        common["metavar"] = flag.option.lstrip("-").upper().replace("-", "_")
    if flag.kind in _LIST_TYPES:
        group.add_argument(flag.option, type=_LIST_TYPES[flag.kind], nargs="+", action=Joined, **common)
    elif flag.kind == SWITCH:
        group.add_argument(flag.option, action="store_true", **common)
    elif flag.kind == CHOICE:
        group.add_argument(flag.option, choices=flag.choices, **common)
    else:
        group.add_argument(flag.option, type=_TYPES[flag.kind], **common)

"""Errors a user can cause, and how a command line reports them: one line on stderr, exit code 2."""

import argparse
import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user: shown as one line, never as a traceback."""


class DataUnavailableError(UserError):
    """A dataset is not on disk and may not be downloaded."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or not one of ours."""


class DeviceError(UserError):
    """The requested device is not available."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none: what a one-line report quotes."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(text: object) -> str:
    """``text`` on one line: a newline or carriage return inside a value the user gave is shown escaped."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose own errors (a bad flag, a missing value) are ``UserError``s: one line, exit 2."""

    def error(self, message: str) -> None:
        raise UserError(message)


def one_line_warnings(message, category, filename, lineno, line=None) -> str:
    """``warnings.formatwarning`` for a command line: the user reads warnings as one line each, no source."""
    return f"warning: {one_line(message)}\n"


def report(error: UserError | OSError) -> int:
    """Print ``error`` as one ``error:`` line on stderr (an OSError with the path the system refused); 2."""
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {one_line(where)}{one_line(error.strerror or error)}", file=sys.stderr)
    else:
        print(f"error: {one_line(error)}", file=sys.stderr)
    return EXIT_USER_ERROR


def distinct(values: tuple, flag: str, choices: tuple[str, ...]) -> None:
    """Refuse an empty list, a repeated value or an unknown one, in one line naming ``flag`` and the choices."""
    if not values or len(set(values)) != len(values):
        raise UserError(f"{flag} needs distinct values, at least one, got {','.join(map(str, values)) or 'none'}")
    unknown = [value for value in values if value not in choices]
    if unknown:
        raise UserError(f"{flag}: unknown {', '.join(map(str, unknown))}; choose among {', '.join(choices)}")

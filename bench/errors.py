"""Errors a user can cause. ``run_bench.py`` prints them as one line and exits with code 2."""


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

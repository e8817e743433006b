"""Errors a user can fix; the CLI prints them as one line (no traceback) and exits 2."""

from __future__ import annotations

from behave.data.manifest import DataError

__all__ = ["ConfigError", "DataError", "EXPECTED_ERRORS"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    LookupError,
    FileNotFoundError,
)

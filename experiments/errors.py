"""The errors the command line reports without a traceback (exit code 2)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a policy name): printed as it is, exit code 2."""


EXIT_BAD_INPUT = 2

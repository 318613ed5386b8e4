"""User-facing errors: one line that says what to fix, exit code 2, no traceback."""

from __future__ import annotations


class CasekitError(Exception):
    """An error caused by the user's input or environment, reported as one line with exit code 2.

    The message must say what is wrong and how to fix it.
    """

    exit_code = 2


class CaseError(CasekitError):
    """A case file is invalid; the message starts with ``file:line:col:``."""


class WorkError(CasekitError):
    """A work's text cannot be ingested (missing, not UTF-8, unsupported format)."""


class LedgerError(CasekitError):
    """A ledger is unreadable or its hash chain does not verify."""


class ProviderUnavailable(CasekitError):
    """A provider cannot be used here (missing SDK, missing model package, missing key)."""

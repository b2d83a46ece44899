"""Errors the offline runtime raises on purpose (everything else is a bug)."""

from __future__ import annotations


class OfflineError(Exception):
    """Base class: the runtime cannot do what the template or the caller asks."""


class TemplateError(OfflineError):
    """The template uses something the offline runtime cannot resolve or create."""


class EnvironmentConflictError(OfflineError):
    """Two functions give the same environment variable different values.

    All handlers run in one process with one ``os.environ``, set once at start (swapping it per invocation races
    when invocations overlap in threads), so a key must mean the same thing in every function.
    """


class NotSettledError(OfflineError, TimeoutError):
    """``Runtime.settle()`` ran out of time while work was still pending."""

"""Exceptions raised by rare_hf.

Per-row LLM failures never raise: they are recorded in the row's error column and counted in the step
summary. Only problems that would make *every* row fail (bad configuration, a dead endpoint) raise, so a
run stops before it spends money on requests that cannot succeed.
"""

from __future__ import annotations

__all__ = ["RareHFError", "LLMConfigError", "LLMFatalError", "LLMRequestError", "LLMClosedError"]


class RareHFError(Exception):
    """Base class of every error raised by rare_hf."""


class LLMConfigError(RareHFError, ValueError):
    """The teacher is not configured (no model, no API key, bad URL). Raised before any request."""


class LLMFatalError(RareHFError):
    """The run was stopped: the endpoint rejects every request (bad key, unknown model, bad request)
    or most recent requests failed (circuit breaker). Responses already received stay cached, so
    running the same call again after fixing the cause resumes where it stopped."""


class LLMRequestError(RareHFError):
    """One request failed for good (after retries). Steps record it per row; it never leaves a step."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class LLMClosedError(RareHFError, RuntimeError):
    """The :class:`rare_hf.LLM` was closed and cannot send or cache anything any more."""

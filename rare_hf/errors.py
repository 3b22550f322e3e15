"""Every exception rare_hf raises, in one tree::

    RareHFError
    ├── LLMConfigError (ValueError)      the teacher is not configured; raised before any request
    │   └── CacheError                   the response cache cannot be used
    ├── LLMFatalError                    the run was stopped: every request would fail (cached replies stay)
    ├── LLMRequestError                  one request failed for good; steps record it per row, never raise it
    ├── LLMClosedError (RuntimeError)    the LLM was closed
    ├── MalformedReply (ValueError)      an HTTP 200 that is not a usable chat completion
    ├── ParseError (ValueError)          a reply the steps cannot use; the message is shown in a repair turn
    └── CliError                         a command-line problem, reported in one line with exit code 2

Per-row LLM failures never raise: they are recorded in the row's error column and counted in the step
summary. Only problems that would make *every* row fail (bad configuration, a dead endpoint) raise, so a
run stops before it spends money on requests that cannot succeed.
"""

from __future__ import annotations

__all__ = [
    "RareHFError",
    "LLMConfigError",
    "CacheError",
    "LLMFatalError",
    "LLMRequestError",
    "LLMClosedError",
    "MalformedReply",
    "ParseError",
    "CliError",
]


class RareHFError(Exception):
    """Base class of every error raised by rare_hf."""


class LLMConfigError(RareHFError, ValueError):
    """The teacher is not configured (no model, no API key, bad URL). Raised before any request."""


class CacheError(LLMConfigError):
    """The response cache cannot be used (corrupt, unreadable, or owned by another user)."""


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


class MalformedReply(RareHFError, ValueError):
    """An HTTP 200 that is not a usable chat completion; keeps the usage it reported (it was paid for)."""

    def __init__(self, reason: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(reason)
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


class ParseError(RareHFError, ValueError):
    """The reply cannot be used; the message says why (it is shown to the teacher in a repair turn)."""


class CliError(RareHFError):
    """A configuration problem, reported in one line with exit code 2 before any LLM request."""

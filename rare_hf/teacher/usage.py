"""Usage, prices and totals: what a run sent, what the cache served, what it cost, and the run's own
breaker. Everything else (summaries, the CLI table, the card, the dry run) asks these objects."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from ..errors import LLMFatalError
from .replies import Completion

__all__ = ["Price", "Usage", "LLMRun", "add_usage"]

# The breaker looks at attempts, not at rows that have used up their retries: a dead endpoint is seen
# after a few dozen requests instead of after every row's full retry budget.
_BREAKER_WINDOW = 50
_BREAKER_FAILURE_RATIO = 0.9
# Different prompts rejected alike (same status, same message but for numbers) before any success: the
# request itself is wrong (an unsupported parameter), not one row.
_SAME_REJECTIONS_TO_STOP = 3
# Replies a step judges before their failure rate can stop it: enough that a few hard documents at the start
# of a corpus do not, few enough that a teacher which cannot do the task costs a few hundred requests. Replies,
# not rows: rows retry breadth-first, so the first row to use up its attempts finishes after most first tries.
FAILURE_WARMUP_REPLIES = 200


@dataclasses.dataclass(frozen=True)
class Price:
    """US dollars per million prompt and completion tokens, times ``discount`` (0.5 in batch mode)."""

    input_usd: float
    output_usd: float
    discount: float = 1.0

    def usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_usd + completion_tokens * self.output_usd) * self.discount / 1e6


@dataclasses.dataclass
class Usage:
    """Counts for one run (a step) or for the whole life of an :class:`LLM`.

    ``prompt_tokens``/``completion_tokens`` are what this process sent and was billed for (every reply
    counts, usable or not); ``cached_prompt_tokens``/``cached_completion_tokens`` are what the replies
    served from the cache cost when they were first paid for. Their sum is what the data cost.
    """

    requests: int = 0
    cached: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    price: Price | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def data_tokens(self) -> int:
        """Tokens the data cost, whether paid by this run or by the run that filled the cache."""
        return self.total_tokens + self.cached_prompt_tokens + self.cached_completion_tokens

    def add(self, completion: Completion) -> None:
        if completion.cached:
            self.cached += 1
            self.cached_prompt_tokens += completion.prompt_tokens
            self.cached_completion_tokens += completion.completion_tokens
        else:
            self.add_paid(completion.prompt_tokens, completion.completion_tokens)

    def add_paid(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """The counts; with a price, also ``usd`` (paid by this run) and ``data_usd`` (what the data cost,
        the cached replies priced as this run's)."""
        counts = {k: v for k, v in dataclasses.asdict(self).items() if k != "price"}
        counts |= {"total_tokens": self.total_tokens, "data_tokens": self.data_tokens}
        if self.price is not None:
            counts |= {"usd": self.usd, "data_usd": self.data_usd}
        return counts

    @property
    def usd(self) -> float | None:
        """Dollars this run paid (``None`` without a price)."""
        return None if self.price is None else self.price.usd(self.prompt_tokens, self.completion_tokens)

    @property
    def data_usd(self) -> float | None:
        """Dollars the data cost, the cached replies priced as this run's (``None`` without a price)."""
        if self.price is None:
            return None
        return self.price.usd(
            self.prompt_tokens + self.cached_prompt_tokens, self.completion_tokens + self.cached_completion_tokens
        )


@dataclasses.dataclass
class LLMRun:
    """State of one run (one step over one dataset): its usage, its breaker and its fail-fast stop.

    Create it with :meth:`LLM.new_run` and pass it to every call of that run.
    """

    name: str = "run"
    usage: Usage = dataclasses.field(default_factory=Usage)
    fatal: LLMFatalError | None = None
    succeeded: bool = False
    started: bool = False  # its first request has started a new epoch of the endpoint's limiter
    recent: collections.deque[bool] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_BREAKER_WINDOW)
    )
    rejections: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    endpoints: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # attempts sent
    lifetime: Usage | None = None  # the LLM's own usage, which counts every run's retries and failures too
    max_failure_rate: float | None = None  # of replies, once FAILURE_WARMUP_REPLIES were judged (LLM's argument)
    last_reply: str = ""  # the latest reply's text: the sample a stop for unusable replies shows
    replies_judged: int = 0
    replies_unusable: int = 0

    def count(self, counter: str) -> None:
        """One more ``"retries"`` or ``"failed"``, in this run's usage and the LLM's."""
        for usage in filter(None, (self.usage, self.lifetime)):
            setattr(usage, counter, getattr(usage, counter) + 1)

    def check(self) -> None:
        if self.fatal is not None:
            # A fresh exception per raise: re-raising one object from hundreds of tasks chains every
            # task's frames onto its traceback (megabytes each when printed).
            raise LLMFatalError(*self.fatal.args) from None

    def stop(self, reason: str) -> None:
        self.fatal = self.fatal or LLMFatalError(f"Stopped '{self.name}': {reason}")

    def attempt(self, ok: bool, last_error: str = "") -> None:
        """Count one attempt's outcome in the breaker."""
        self.recent.append(ok)
        self.succeeded = self.succeeded or ok
        failures = self.recent.count(False)
        if len(self.recent) == self.recent.maxlen and failures >= _BREAKER_FAILURE_RATIO * len(self.recent):
            self.stop(
                f"{failures} of the last {len(self.recent)} attempts failed (last error: {last_error}). Check "
                "the endpoint; responses received so far are cached, so running the same call again resumes."
            )

    def reply_judged(self, problem: str | None) -> None:
        """Count a reply the step found usable (``None``) or not (why); stop when, after the warm-up, nearly
        every reply was unusable: the teacher cannot do the task, and every further request is money lost."""
        self.replies_judged += 1
        self.replies_unusable += problem is not None
        judged, unusable = self.replies_judged, self.replies_unusable
        if problem is None or self.max_failure_rate is None or judged < FAILURE_WARMUP_REPLIES:
            return
        if unusable >= self.max_failure_rate * judged:
            sample = " ".join(self.last_reply.split())[:160]
            self.stop(
                f"{unusable} of the first {judged} replies were unusable (the latest: {problem}); the latest "
                f"reply began: {sample!r}. Check the model and the prompt (the replies so far are cached); "
                "LLM(max_failure_rate=None) or --max-failure-rate off turns this check off."
            )

    def rejected(self, signature: str, prompt_key: str, error: str, hint: str) -> None:
        """Count a rejected prompt; stop when several different prompts are rejected alike before any success."""
        if self.succeeded:
            return
        prompts = self.rejections.setdefault(signature, set())
        prompts.add(prompt_key)
        if len(prompts) >= _SAME_REJECTIONS_TO_STOP:
            self.stop(f"{len(prompts)} different prompts were all rejected with {error} before any success. {hint}")


def add_usage(*usages: dict[str, Any]) -> dict[str, Any]:
    """Usage dicts (:meth:`Usage.to_dict`, as summaries keep them) added up key by key, zeros kept; the one
    place totals are made (splits, Ray batches, a run's steps)."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            total[key] = total.get(key, 0) + value
    return total

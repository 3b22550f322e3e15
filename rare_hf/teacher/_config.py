"""An :class:`rare_hf.LLM`'s configuration checked before anything starts: one line each, saying how to fix it."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence

from ..errors import LLMConfigError
from ._urls import redact_url


def resolve(
    model: str | None,
    api_key: str | None,
    base_url: str | Sequence[str] | None,
    max_concurrency: int,
    timeout: float,
    max_retries: int,
    max_failure_rate: float | None,
    context_window: int | None = None,
    *,
    batch: bool = False,
    cache: bool = True,
) -> tuple[str, str, list[str]]:
    """The model, the API key and the endpoint URLs, from the arguments or the environment."""
    model = model or os.environ.get("RARE_HF_MODEL")
    if not model:
        raise LLMConfigError(
            "No teacher model given: pass LLM(model=...) or set the RARE_HF_MODEL environment variable."
        )
    urls = resolve_urls(base_url)
    for url in urls or [""]:
        if not url.startswith(("http://", "https://")):
            raise LLMConfigError(f"base_url must start with http:// or https://, got {redact_url(url)!r}.")
    api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    if not api_key and all(is_loopback(u) for u in urls):
        api_key = "EMPTY"  # a server on this machine: any value passes where there is no auth
    if not api_key:
        raise LLMConfigError(
            "No API key: pass LLM(api_key=...) or set OPENAI_API_KEY. Servers on this machine (localhost, "
            "127.0.0.1) need none; others without authentication accept any value, e.g. api_key='EMPTY'."
        )
    if len(set(urls)) < len(urls):
        raise LLMConfigError(f"base_url lists an endpoint twice: {[redact_url(u) for u in urls]}.")
    if max_concurrency < 1:
        raise LLMConfigError(f"max_concurrency must be >= 1, got {max_concurrency}.")
    if timeout <= 0 or max_retries < 0:
        raise LLMConfigError(f"timeout must be > 0 and max_retries >= 0, got {timeout} and {max_retries}.")
    if max_failure_rate is not None and not 0 < max_failure_rate <= 1:
        raise LLMConfigError(f"max_failure_rate must be in (0, 1] or None, got {max_failure_rate}.")
    if batch and (not cache or len(urls) > 1):
        raise LLMConfigError(
            "batch=True needs the response cache (cache_dir not False) and one base_url: the cache keeps "
            "the results and the submitted batch ids."
        )
    if context_window is not None and context_window < 256:
        raise LLMConfigError(f"context_window must be >= 256 tokens, got {context_window}.")
    return model, api_key, urls


def resolve_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """The endpoint URLs: as given, else ``$OPENAI_BASE_URL``, else OpenAI."""
    given = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
    return [(u or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/") for u in given]


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine."""
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "localhost" or host.endswith(".localhost") or host.startswith("127.") or host == "::1"

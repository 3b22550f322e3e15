"""rare_hf: build RARE (Retrieval-Augmented Reasoning Modeling) training data on Hugging Face datasets.

Names are imported on first use (as ``huggingface_hub`` does), so ``import rare_hf``, ``rare-hf --help`` and
``rare_hf.testing`` do not pay for ``datasets``, ``openai`` and ``bm25s`` until they are needed.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "add_questions": "questions",
    "add_hard_negatives": "negatives",
    "add_reasoning": "reasoning",
    "verify_negatives": "verify",
    "add_written_negatives": "written",
    "reasoning_messages_for_row": "reasoning",
    "document_order": "reasoning",
    "build_rare_dataset": "pipeline",
    "RunSummary": "pipeline",
    "to_sft": "export",
    "to_retrieval_triples": "export",
    "push_to_hub": "hub",
    "BM25Index": "bm25",
    "StepSummary": "summary",
    "load_sample_documents": "samples",
    "LLM": "llm",
    "Completion": "llm",
    "LLMRun": "llm",
    "Usage": "llm",
    "Price": "llm",
    "Prompt": "prompts",
    "estimate_run": "estimate",
    "StepEstimate": "estimate",
    "ResponseCache": "cache",
    "CacheError": "cache",
    "default_cache_dir": "cache",
    "RareHFError": "errors",
    "LLMConfigError": "errors",
    "LLMFatalError": "errors",
    "LLMRequestError": "errors",
    "LLMClosedError": "errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in {"hub", "dataflow", "testing", "answers", "parsing", "prompts"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rare_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from .bm25 import BM25Index
    from .cache import CacheError, ResponseCache, default_cache_dir
    from .errors import LLMClosedError, LLMConfigError, LLMFatalError, LLMRequestError, RareHFError
    from .export import to_retrieval_triples, to_sft
    from .hub import push_to_hub
    from .estimate import StepEstimate, estimate_run
    from .llm import LLM, Completion, LLMRun, Price, Usage
    from .negatives import add_hard_negatives
    from .pipeline import RunSummary, build_rare_dataset
    from .prompts import Prompt
    from .questions import add_questions
    from .reasoning import add_reasoning, document_order, reasoning_messages_for_row
    from .samples import load_sample_documents
    from .verify import verify_negatives
    from .written import add_written_negatives
    from .summary import StepSummary

logging.getLogger(__name__).addHandler(logging.NullHandler())

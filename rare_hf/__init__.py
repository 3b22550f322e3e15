"""rare_hf: build RARE (Retrieval-Augmented Reasoning Modeling) training data on Hugging Face datasets."""

from __future__ import annotations

import logging

from .cache import CacheError, ResponseCache, default_cache_dir
from .errors import LLMClosedError, LLMConfigError, LLMFatalError, LLMRequestError, RareHFError
from .hub import push_to_hub
from .llm import LLM, Completion, LLMRun, Usage
from .bm25 import BM25Index
from .negatives import add_hard_negatives
from .export import to_retrieval_triples, to_sft
from .pipeline import RunSummary, build_rare_dataset
from .questions import add_questions
from .samples import load_sample_documents
from .reasoning import add_reasoning, document_order, reasoning_messages_for_row
from .summary import StepSummary

__version__ = "0.1.0"

__all__ = [
    "add_questions",
    "add_hard_negatives",
    "add_reasoning",
    "reasoning_messages_for_row",
    "document_order",
    "build_rare_dataset",
    "RunSummary",
    "to_sft",
    "to_retrieval_triples",
    "push_to_hub",
    "BM25Index",
    "StepSummary",
    "load_sample_documents",
    "LLM",
    "Completion",
    "LLMRun",
    "Usage",
    "ResponseCache",
    "default_cache_dir",
    "RareHFError",
    "LLMConfigError",
    "LLMFatalError",
    "LLMRequestError",
    "LLMClosedError",
    "CacheError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

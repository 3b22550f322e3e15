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
    "add_questions": "steps.questions",
    "add_hard_negatives": "steps.negatives",
    "add_reasoning": "steps.reasoning",
    "verify_negatives": "steps.verify",
    "dedup_documents": "steps.dedup",
    "dedup_questions": "steps.dedup_questions",
    "add_easiness": "steps.easiness",
    "decontaminate": "steps.decontaminate",
    "judge": "steps.judge",
    "add_written_negatives": "steps.written",
    "reasoning_messages_for_row": "steps.shown_documents",
    "document_order": "steps.shown_documents",
    "build_rare_dataset": "steps.pipeline",
    "PromptStep": "steps.custom",
    "RunSummary": "steps.pipeline",
    "to_sft": "io.reasoning_formats",
    "to_preference": "io.reasoning_formats",
    "to_retrieval_triples": "io.retrieval_formats",
    "to_sentence_transformers": "io.retrieval_formats",
    "to_flag_embedding": "io.retrieval_formats",
    "split_for_eval": "io.beir",
    "held_out_documents": "io.beir",
    "to_beir": "io.beir",
    "save_beir": "io.beir",
    "export": "io.formats",
    "push_to_hub": "io.hub",
    "BM25Index": "retrieval.bm25",
    "StepSummary": "steps.summary",
    "load_sample_documents": "io.samples",
    "LLM": "teacher.client",
    "Completion": "teacher.client",
    "LLMRun": "teacher.client",
    "Usage": "teacher.client",
    "Price": "teacher.client",
    "LocalServer": "teacher.local",
    "Embedder": "teacher.embedder",
    "EmbeddingEstimate": "teacher.embedder",
    "Reranker": "teacher.reranker",
    "Prompt": "text.prompts",
    "estimate_run": "steps.estimate",
    "StepEstimate": "steps.estimate",
    "ResponseCache": "teacher.cache",
    "CacheError": "errors",
    "MalformedReply": "errors",
    "ParseError": "errors",
    "CliError": "errors",
    "default_cache_dir": "teacher.cache",
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
    from .errors import (
        CacheError,
        CliError,
        LLMClosedError,
        LLMConfigError,
        LLMFatalError,
        LLMRequestError,
        MalformedReply,
        ParseError,
        RareHFError,
    )
    from .io.beir import held_out_documents, save_beir, split_for_eval, to_beir
    from .io.formats import export
    from .io.reasoning_formats import to_preference, to_sft
    from .io.retrieval_formats import to_flag_embedding, to_retrieval_triples, to_sentence_transformers
    from .io.hub import push_to_hub
    from .io.samples import load_sample_documents
    from .retrieval.bm25 import BM25Index
    from .steps.custom import PromptStep
    from .steps.dedup import dedup_documents
    from .steps.dedup_questions import dedup_questions
    from .steps.decontaminate import decontaminate
    from .steps.easiness import add_easiness
    from .steps.judge import judge
    from .steps.estimate import StepEstimate, estimate_run
    from .steps.negatives import add_hard_negatives
    from .steps.pipeline import RunSummary, build_rare_dataset
    from .steps.questions import add_questions
    from .steps.reasoning import add_reasoning
    from .steps.shown_documents import document_order, reasoning_messages_for_row
    from .steps.summary import StepSummary
    from .steps.verify import verify_negatives
    from .steps.written import add_written_negatives
    from .teacher.cache import ResponseCache, default_cache_dir
    from .teacher.client import LLM, Completion, LLMRun, Price, Usage
    from .teacher.embedder import Embedder, EmbeddingEstimate
    from .teacher.local import LocalServer
    from .teacher.reranker import Reranker
    from .text.prompts import Prompt

logging.getLogger(__name__).addHandler(logging.NullHandler())

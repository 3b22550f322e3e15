"""The hard-negative step's models on the command line: an embedding model (semantic guard, dense and hybrid
mining) and a reranker, each on its own endpoint or the teacher's, and the step arguments they make."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import CliError


@dataclasses.dataclass
class NegativeModels:
    """The embedder and reranker the run uses (``None`` when not asked for)."""

    embedder: Any = None
    reranker: Any = None

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, steps: list[str], base_url: Any, api_key: str | None, cache: Any
    ) -> NegativeModels:
        """Check the flags (one line each, before any request) and build the clients."""
        guarded = args.embedding_model or args.rerank_model
        if args.mining != "bm25" and not args.embedding_model:
            raise CliError(f"--mining {args.mining} needs --embedding-model (an embedding model on an "
                           "OpenAI-compatible endpoint).")  # fmt: skip
        if args.false_negatives == "positive" and not guarded and "verify_negatives" not in steps:
            raise CliError("--false-negatives positive needs a guard that finds them: --embedding-model, "
                           "--rerank-model, or the verify step in --steps.")  # fmt: skip
        if guarded and args.ray:
            raise CliError("--embedding-model and --rerank-model do not run on Ray yet: drop --ray, or mine on one "
                           "machine first (--steps questions,negatives) and run the reasoning on Ray.")  # fmt: skip
        if guarded and "hard_negatives" not in steps:
            raise CliError("--embedding-model and --rerank-model serve the hard-negatives step, which --steps does "
                           "not run.")  # fmt: skip
        common = {"api_key": api_key, "timeout": args.timeout, "max_retries": args.max_retries, "cache_dir": cache}
        models = cls()
        if args.embedding_model:
            from ..teacher.embedder import Embedder

            models.embedder = Embedder(
                args.embedding_model, base_url=args.embedding_url or base_url, document_prefix=args.document_prefix,
                query_prefix=args.query_prefix, **common,
            )  # fmt: skip
        if args.rerank_model:
            from ..teacher.reranker import Reranker

            models.reranker = Reranker(args.rerank_model, base_url=args.rerank_url or base_url, **common)
        return models

    def negatives_kwargs(self, ds: Any, args: argparse.Namespace, steps: list[str]) -> dict[str, Any] | None:
        """The hard-negative step's arguments: the models, and with --eval-fraction the held-out documents,
        chosen before mining so none is a training row's negative (the row would lose it at export)."""
        if "hard_negatives" not in steps:
            return None
        kwargs: dict[str, Any] = {}
        if self.embedder is not None:
            kwargs |= {"embedder": self.embedder, "method": args.mining}
        if self.reranker is not None:
            kwargs["reranker"] = self.reranker
        if self.embedder is not None or self.reranker is not None:
            kwargs["false_negatives"] = args.false_negatives
        if args.eval_fraction:
            from ..io.beir import held_out_documents
            from ..utils.datasets import doc_ids

            kwargs["exclude_ids"] = held_out_documents(
                doc_ids(ds, args.text_column), args.eval_fraction, seed=args.seed
            )
        return kwargs or None

    def check_connections(self) -> None:
        for client in (self.embedder, self.reranker):
            if client is not None:
                client.check_connection()

    def close(self) -> None:
        for client in (self.embedder, self.reranker):
            if client is not None:
                client.close()

"""The corpus embedded for dense and hybrid mining: every document once, through the embedder (whose response
cache makes a re-run free), kept beside a saved BM25 index under a name that fingerprints the corpus and the
embedding model, so the next run over that index loads it instead of asking again."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..retrieval.bm25 import BM25Index
from ..retrieval.dense import DenseIndex
from ..teacher.embedder import Embedder
from ..teacher.usage import LLMRun

logger = logging.getLogger(__name__)


def dense_index(
    embedder: Embedder, index: BM25Index, folder: Path | None, run: LLMRun, show_progress: bool
) -> tuple[DenseIndex, int, str]:
    """The corpus's vectors, and how many documents could not be embedded (zero rows: never retrieved), and
    where they came from (the stored file, or the embedder)."""
    key = {"corpus": index.fingerprint, "embedder": embedder.fingerprint}
    name = "dense-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".npy"
    if folder is not None and (folder / name).exists():
        dense = DenseIndex.load(folder / name)
        return dense, int((~np.any(dense.vectors, axis=1)).sum()), str(folder / name)
    texts = index.text_array.to_pylist()
    usable = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    found, errors = embedder.run_sync(
        embedder.aembed([texts[i] for i in usable], kind="document", show_progress=show_progress, run=run)
    )
    vectors = np.zeros((len(texts), found.shape[1]), dtype=np.float32)
    ok = np.array([e is None for e in errors], dtype=bool)
    vectors[np.array(usable, dtype=np.int64)[ok]] = found[ok]
    failed = len(texts) - int(ok.sum())
    if failed:
        first = next((e for e in errors if e is not None), "the document is empty")
        logger.warning("%d of %d corpus documents were not embedded (%s); they are not retrieved densely.",
                       failed, len(texts), first)  # fmt: skip
    dense = DenseIndex(vectors)
    if folder is not None and not failed:  # a complete set only: a later run retries the missing ones
        dense.save(folder / name)
        return dense, failed, str(folder / name)
    return dense, failed, "embedded by this run"

"""A bm25s index over a corpus of documents, with what hard-negative mining needs besides scores:
document ids, a normalised-text key per document (to catch duplicates) and each document's set of
token ids (to catch overlapping chunks). Save once, reload memory-mapped."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import datasets
import numpy as np
import pyarrow as pa
import Stemmer
from bm25s.tokenization import Tokenizer
from tqdm.auto import tqdm

from ..text.script import NO_SPACE, NO_SPACE_CHAR, share
from ..utils.datasets import doc_id_for, quiet_datasets_progress
from .shingles import passage_csr

__all__ = ["BM25Index", "normalized_key"]

logger = logging.getLogger(__name__)

_META = "rare_hf_index.json"
_FORMAT_VERSION = 1

try:  # numba is optional: the pure-numpy backend gives the same results, more slowly on large work
    import numba  # noqa: F401

    _HAS_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAS_NUMBA = False
# bm25s's numba retrieval costs ~8 s of compilation per process; below this many (queries x documents)
# the numpy backend finishes before numba would have compiled.
_NUMBA_MIN_WORK = 3e8


def normalized_key(text: str) -> int:
    """A 63-bit key equal for texts that differ only in case and whitespace."""
    squashed = " ".join(text.lower().split())
    return int.from_bytes(hashlib.sha1(squashed.encode("utf-8")).digest()[:8], "little") >> 1


class BM25Index:
    """BM25 (bm25s) over a corpus, plus ids, duplicate keys and token sets per document.

    Build with :meth:`build`, persist with :meth:`save`, reload with :meth:`load` (memory-mapped).

    Example:
        >>> index = BM25Index.build(texts, doc_ids=ids)
        >>> index.save("my_index")
        >>> index = BM25Index.load("my_index")          # memory-mapped: fast and light
        >>> rare_hf.add_hard_negatives(ds, corpus=index)
    """

    def __init__(
        self,
        retriever: bm25s.BM25,
        tokenizer: Tokenizer,
        corpus: datasets.Dataset,
        token_indptr: np.ndarray,
        token_ids: np.ndarray,
        params: dict[str, Any],
        passages: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.corpus = corpus  # columns: text, doc_id, key
        self.params = params
        self.token_indptr = token_indptr  # CSR of each document's sorted distinct token ids
        self.token_ids = token_ids
        table = corpus.with_format("arrow")
        # Winnowed hashes of every document's runs of words (see _shingles), to find shared passages.
        self.passage_indptr, self.passage_ids = passages or passage_csr(table["text"].to_pylist())
        self.text_array = _string_array(table["text"])
        self.id_array = _string_array(table["doc_id"])
        self.doc_ids: list[str] = self.id_array.to_pylist()
        self._position = {int(k): i for i, k in enumerate(table["key"].to_numpy())}
        self.path: Path | None = None  # the folder it was saved to or loaded from (dense vectors are kept there)
        self._position_of_id = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        self._csc_sorted = _csc_is_sorted(retriever.scores)

    def __len__(self) -> int:
        return len(self.doc_ids)

    @functools.cached_property
    def term_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token its squared IDF (the corpus's BM25 IDF, never negative), and per document the norm of
        its IDF-weighted set of distinct terms: what :func:`~rare_hf.retrieval.kernels.pick_kernel` needs for a
        document-to-document cosine in which a shared rare term outweighs many shared common ones."""
        ids = np.asarray(self.token_ids)
        df = np.bincount(ids, minlength=int(ids.max()) + 1 if len(ids) else 0)
        idf = np.log1p((len(self) - df + 0.5) / (df + 0.5))
        weights = (idf * idf).astype(np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(weights[ids])])
        indptr = np.asarray(self.token_indptr)
        return weights, np.sqrt(cumulative[indptr[1:]] - cumulative[indptr[:-1]])

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the indexed content (every document's normalised text key and id) and the BM25
        settings: two corpora of the same size never share it. Computed once, from arrays already here."""
        table = self.corpus.with_format("arrow")
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(table["key"].to_numpy()).tobytes())
        for chunk in self.id_array.buffers():
            if chunk is not None:
                digest.update(chunk)
        return digest.hexdigest()[:32]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        doc_ids: Sequence[str] | None = None,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        language: str | None = "auto",
        stopwords: str | list[str] | None = "en",
        show_progress: bool = True,
    ) -> BM25Index:
        """Index ``texts`` (duplicates by normalised text are indexed once, under the first id).

        Args:
            texts: The documents.
            doc_ids: One id per text; default: a hash of the text (the same id ``add_questions`` gives).
            k1, b, method: BM25 parameters (defaults: Lucene variant, k1=0.9, b=0.4, as Pyserini).
            language: ``"auto"`` (default): character bigrams when the corpus is mostly Chinese, Japanese,
                Korean or Thai, else English stemming. ``"chinese"``/``"zh"``, ``"japanese"``/``"ja"``,
                ``"korean"``/``"ko"``, ``"thai"``/``"th"``: character bigrams (the usual BM25 practice for
                scripts without spaces; no stemming or stopwords). Any other name: that Snowball stemmer
                (PyStemmer); ``None``: no stemming.
            stopwords: A bm25s stopword list name (``"en"``, ``"de"``, ...), a list, or ``None``.
            show_progress: Show tokenisation and indexing progress bars.

        Raises:
            ValueError: the corpus has no non-empty document.
        """
        ids = list(doc_ids) if doc_ids is not None else [doc_id_for(t) for t in texts]
        if len(ids) != len(texts):
            raise ValueError(f"doc_ids has {len(ids)} entries but there are {len(texts)} texts.")
        keep_texts, keep_ids, keep_keys, seen = [], [], [], set()
        for text, doc_id in zip(texts, ids):
            if not isinstance(text, str) or not text.strip():
                continue
            key = normalized_key(text)
            if key not in seen:
                seen.add(key)
                keep_texts.append(text)
                keep_ids.append(str(doc_id))
                keep_keys.append(key)
        if not keep_texts:
            raise ValueError("The corpus is empty: it has no non-empty document to mine negatives from.")
        language = resolve_language(language, keep_texts)
        params = {"k1": k1, "b": b, "method": method, "language": language, "stopwords": stopwords}
        tokenizer = _make_tokenizer(language, stopwords)
        # One int32 array per document instead of a list of Python ints: a tenth of the memory (about
        # 0.5 GB instead of 5 GB at a million documents), and bm25s iterates either the same way.
        stream = tokenizer.streaming_tokenize(keep_texts, update_vocab=True)
        token_lists = [
            array("i", token_ids)
            for token_ids in tqdm(stream, total=len(keep_texts), desc="Tokenizing corpus", disable=not show_progress)
        ]
        retriever = bm25s.BM25(k1=k1, b=b, method=method, backend="numpy")
        retriever.index((token_lists, tokenizer.get_vocab_dict()), show_progress=False)  # one bar per step: ours
        indptr, flat = _unique_token_csr(token_lists)
        del token_lists
        corpus = datasets.Dataset.from_dict({"text": keep_texts, "doc_id": keep_ids, "key": keep_keys})
        return cls(retriever, tokenizer, corpus, indptr, flat, params, passage_csr(keep_texts))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to a folder (reload it with :meth:`load`)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(path / "bm25s"))
        self.tokenizer.save_vocab(str(path / "tokenizer"))
        self.tokenizer.save_stopwords(str(path / "tokenizer"))
        np.save(path / "token_indptr.npy", self.token_indptr)
        np.save(path / "token_ids.npy", self.token_ids)
        np.save(path / "passage_indptr.npy", self.passage_indptr)
        np.save(path / "passage_ids.npy", self.passage_ids)
        with quiet_datasets_progress():
            self.corpus.save_to_disk(str(path / "corpus"))
        (path / _META).write_text(
            json.dumps({"format": _FORMAT_VERSION, "params": self.params, "num_docs": len(self)}, indent=2)
        )
        self.path = path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> BM25Index:
        """Load an index written by :meth:`save`; ``mmap=True`` keeps the big arrays on disk."""
        path = Path(path)
        meta_path = path / _META
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{path} is not a rare_hf BM25 index (no {_META}); build one with BM25Index.build(...).save(path)."
            )
        meta = json.loads(meta_path.read_text())
        params = meta["params"]
        retriever = bm25s.BM25.load(str(path / "bm25s"), mmap=mmap)
        tokenizer = _make_tokenizer(params["language"], params["stopwords"])
        tokenizer.load_vocab(str(path / "tokenizer"))
        tokenizer.load_stopwords(str(path / "tokenizer"))
        mode = "r" if mmap else None
        indptr = np.load(path / "token_indptr.npy", mmap_mode=mode)
        flat = np.load(path / "token_ids.npy", mmap_mode=mode)
        corpus = datasets.load_from_disk(str(path / "corpus"))
        passages = None  # indexes saved before passage hashes existed get them computed now
        if (path / "passage_ids.npy").exists():
            passages = (
                np.load(path / "passage_indptr.npy", mmap_mode=mode),
                np.load(path / "passage_ids.npy", mmap_mode=mode),
            )
        index = cls(retriever, tokenizer, corpus, indptr, flat, params, passages)
        index.path = path
        return index

    # -- queries -----------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts`` in this index's vocabulary; unknown words are dropped, so a text with
        no known word gives an empty list."""
        unknown = self.tokenizer.get_vocab_dict().get("")
        tokens = self.tokenizer.tokenize(texts, update_vocab=False, return_as="ids", show_progress=False)
        return [[t for t in ids if t != unknown] for ids in tokens]

    def search(
        self, query_ids: list[list[int]], k: int, *, expected_queries: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (documents, scores) per non-empty tokenised query, over all cores.

        ``expected_queries`` (the whole job's size, when this is one batch of it) decides whether
        compiling the numba backend pays off.
        """
        work = (expected_queries or len(query_ids)) * len(self)
        self.retriever.backend = "numba" if _HAS_NUMBA and work >= _NUMBA_MIN_WORK else "numpy"
        docs, scores = self.retriever.retrieve(query_ids, k=min(k, len(self)), n_threads=-1, show_progress=False)
        return np.asarray(docs), np.asarray(scores)

    def score(self, query_ids: list[int], doc: int) -> float:
        """BM25 score of one corpus document for one tokenised query (without scoring the whole corpus)."""
        scores = self.retriever.scores
        data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
        total = 0.0
        for token in query_ids:
            start, end = int(indptr[token]), int(indptr[token + 1])
            column = indices[start:end]
            if self._csc_sorted:
                pos = start + int(np.searchsorted(column, doc))
                if pos < end and indices[pos] == doc:
                    total += float(data[pos])
            else:
                total += float(data[start:end][column == doc].sum())
        return total

    def position_of(self, text: str) -> int:
        """Corpus position of a document with this normalised text, or -1."""
        return self._position.get(normalized_key(text), -1)

    def position_of_id(self, doc_id: str) -> int:
        """Corpus position of the document with this id, or -1."""
        return self._position_of_id.get(doc_id, -1)


def _string_array(column: pa.ChunkedArray) -> pa.Array:
    """One contiguous string array (``take`` on it is fast), whatever the source's chunking."""
    array = column.combine_chunks()
    return array.cast(pa.string()) if array.type != pa.string() else array


BIGRAMS = "cjk-bigrams"
_NO_SPACE_LANGUAGES = {"chinese", "zh", "japanese", "ja", "korean", "ko", "thai", "th", BIGRAMS}
_RUN = re.compile(f"[{NO_SPACE}]+|[^\\W_{NO_SPACE}]{{2,}}")


def resolve_language(language: str | None, texts: Sequence[str]) -> str | None:
    """``"cjk-bigrams"`` for scripts written without spaces (named, or detected with ``"auto"`` from a
    sample of the texts), else the stemmer language."""
    if language is None or language.lower() in _NO_SPACE_LANGUAGES:
        return language and BIGRAMS
    if language != "auto":
        return language
    return BIGRAMS if share(texts, NO_SPACE_CHAR) > 0.3 else "english"


def _bigrams(text: str) -> list[str]:
    """Character bigrams of every run of a script without spaces (a lone character stays a unigram), and
    whole words elsewhere (mixed text keeps its Latin terms)."""
    tokens: list[str] = []
    for run in _RUN.findall(text):
        if NO_SPACE_CHAR.match(run):
            tokens.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
        else:
            tokens.append(run)
    return tokens


def _make_tokenizer(language: str | None, stopwords: str | list[str] | None) -> Tokenizer:
    if language == BIGRAMS:
        return Tokenizer(splitter=_bigrams, stopwords=[], stemmer=None, lower=True)
    stemmer = Stemmer.Stemmer(language) if language else None
    return Tokenizer(stemmer=stemmer, stopwords=stopwords or [], lower=True)


def _unique_token_csr(token_lists: list[array], chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct token ids of every document, as one CSR (indptr, ids) pair, built in chunks of
    documents so the temporary arrays stay small."""
    counts, ids = [], []
    for start in range(0, len(token_lists), chunk):
        part = token_lists[start : start + chunk]
        lengths = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
        flat = np.concatenate([np.frombuffer(t, dtype=np.int32) for t in part] or [np.empty(0, np.int32)])
        pairs = np.unique(np.repeat(np.arange(len(part), dtype=np.int64), lengths) << 32 | flat.astype(np.int64))
        counts.append(np.bincount(pairs >> 32, minlength=len(part)))
        ids.append((pairs & 0xFFFFFFFF).astype(np.int32))
    indptr = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    return indptr, np.concatenate(ids)


def _csc_is_sorted(scores: dict[str, Any]) -> bool:
    """Whether document indices are ascending within every token column (bm25s builds them so)."""
    indices, indptr = np.asarray(scores["indices"]), np.asarray(scores["indptr"])
    if len(indices) < 2:
        return True
    decreasing = np.flatnonzero(np.diff(indices) < 0) + 1
    return bool(np.isin(decreasing, indptr).all())

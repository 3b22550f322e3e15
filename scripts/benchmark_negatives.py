"""Benchmark add_hard_negatives against bare bm25s and rank_bm25 on the same questions, in one run.

The corpus is realistic English: a word-bigram model trained on the Python standard library's
documentation and rare_hf's sample documents generates N documents of 80-200 words; each question is
20-40 words drawn from its document's sentences with other words mixed in.

Usage:
    python scripts/benchmark_negatives.py                      # 100,000 documents
    python scripts/benchmark_negatives.py --num-docs 1000000 --num-questions 100000 --repeats 1 \
        --rank-bm25-sample 0                                   # the memory check at a million documents
"""

from __future__ import annotations

import argparse
import collections
import os
import pydoc
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import datasets  # noqa: E402

import rare_hf  # noqa: E402
from rare_hf import BM25Index  # noqa: E402

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|[.,;]")
# What pydoc prints differently from one process to the next: object addresses, and the DATA section's values
# (sets and dicts print in hash-seed order). Left in, every run would mine a slightly different corpus.
_UNSTABLE = re.compile(r"0x[0-9a-fA-F]+|\nDATA\n.*?(?=\n[A-Z][A-Z ]+\n|\Z)", re.DOTALL)


def training_text() -> list[str]:
    """Real English: docstrings of the standard library plus the bundled sample documents."""
    words: list[str] = []
    for module in sorted(sys.stdlib_module_names):
        if module.startswith("_") or module in {"antigravity", "this", "idlelib", "tkinter", "turtle"}:
            continue
        try:
            text = pydoc.render_doc(module, renderer=pydoc.plaintext)
        except Exception:  # noqa: BLE001 - some modules do not import on this platform
            continue
        words.extend(_WORD.findall(_UNSTABLE.sub(" ", text)))
    sample = Path(rare_hf.__file__).parent / "data" / "sample_documents.jsonl"
    if sample.exists():
        words.extend(_WORD.findall(sample.read_text()))
    return words


def generate(num_docs: int, seed: int) -> tuple[list[str], list[str]]:
    words = training_text()
    following: dict[str, list[str]] = collections.defaultdict(list)
    for a, b in zip(words, words[1:]):
        following[a.lower()].append(b.lower())
    starts = [w for w in following if w.isalpha() and len(following[w]) > 3]
    rng = random.Random(seed)
    docs, questions = [], []
    for _ in range(num_docs):
        word, out = rng.choice(starts), []
        for _ in range(rng.randint(80, 200)):
            out.append(word)
            nxt = following.get(word)
            word = rng.choice(nxt) if nxt and rng.random() > 0.05 else rng.choice(starts)
        doc = " ".join(out).replace(" .", ".").replace(" ,", ",").replace(" ;", ";")
        docs.append(doc)
        tokens = [w for w in out if w.isalpha()]
        start = rng.randrange(max(1, len(tokens) - 30))
        q = tokens[start : start + rng.randint(12, 25)] + [rng.choice(starts) for _ in range(rng.randint(8, 15))]
        rng.shuffle(q)
        questions.append(" ".join(q) + "?")
    return docs, questions


def rank_bm25_questions_per_s(docs: list[str], questions: list[str], k: int) -> float | None:
    """rank_bm25 (pure Python) on a sample of the questions over the same corpus; None if not installed."""
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        return None
    okapi = BM25Okapi([d.lower().split() for d in docs], k1=0.9, b=0.4)
    start = time.perf_counter()
    for q in questions:
        okapi.get_top_n(q.lower().split(), docs, n=k)
    return len(questions) / (time.perf_counter() - start)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-docs", type=int, default=100_000)
    parser.add_argument(
        "--num-questions",
        type=int,
        default=None,
        help="mine for the first N documents only (default: all); the corpus stays --num-docs",
    )
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument("--rank-bm25-sample", type=int, default=50, help="questions timed on rank_bm25 (0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each method; the best is reported")
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="also time the semantic guard (embedder=, rare_hf.testing's hashed embeddings over HTTP): once from an "
        "empty cache, then from a warm one against mining without it",
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    docs, questions = generate(args.num_docs, args.seed)
    questions = questions[: args.num_questions or len(questions)]
    t_gen = time.perf_counter() - t0
    ds = datasets.Dataset.from_dict({"text": docs[: len(questions)], "question": questions})
    print(
        f"corpus: {len(docs):,} documents, mean {sum(map(len, docs)) / len(docs):.0f} chars; "
        f"{len(questions):,} questions (generated in {t_gen:.1f}s)"
    )

    t0 = time.perf_counter()
    index = BM25Index.build(docs, show_progress=False)
    t_index = time.perf_counter() - t0

    # Compile bm25s's numba kernels once (about 8 s per process) so neither timing below includes it.
    index.search(index.tokenize(questions[:10]), args.num_neg + 1, expected_queries=len(questions))
    t_compile = time.perf_counter() - t0 - t_index

    def mine() -> tuple[datasets.Dataset, rare_hf.StepSummary]:
        return rare_hf.add_hard_negatives(
            ds, corpus=index, num_neg=args.num_neg, show_progress=False, return_summary=True
        )

    def bare() -> None:  # bare bm25s on the same index and questions: tokenise, retrieve num_neg + 1
        index.search([q for q in index.tokenize(questions) if q], args.num_neg + 1, expected_queries=len(questions))

    # Alternate the two and keep each one's best of `repeats`, so caches warm for both alike.
    t_mine = t_bare = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out, summary = mine()
        t_mine = min(t_mine, time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        t_bare = min(t_bare, time.perf_counter() - t0)
    rss_after_mining = peak_rss_gb()

    sample = args.rank_bm25_sample
    rank_bm25_rate = rank_bm25_questions_per_s(docs, questions[:sample], args.num_neg + 1) if sample else None

    n = len(questions)
    print(f"index build:          {t_index:8.1f} s   (+ {t_compile:.1f} s numba compilation, once per process)")
    print(f"mining (rare_hf):     {t_mine:8.1f} s   {n / t_mine:10,.0f} questions/s")
    print(f"bare bm25s retrieve:  {t_bare:8.1f} s   {n / t_bare:10,.0f} questions/s")
    print(f"overhead vs bm25s:    {t_mine / t_bare:8.2f} x   (target <= 1.5x)")
    if rank_bm25_rate:
        print(
            f"rank_bm25 (sample {sample}): {rank_bm25_rate:10,.1f} questions/s -> {n / rank_bm25_rate:,.0f} s "
            f"for all; rare_hf is {n / t_mine / rank_bm25_rate:,.0f}x faster"
        )
    print(f"end to end:           {t_index + t_compile + t_mine:8.1f} s   (target < 120 s at 100k x 100k)")
    print(
        f"peak RSS:             {rss_after_mining:8.2f} GB after mining and bare retrieval, "
        f"{peak_rss_gb():.2f} GB at exit"
    )
    print(
        f"rows short of {args.num_neg}: {summary.stats['short']:,}; mean negatives {summary.stats['mean_negatives']}; "
        f"dropped candidates {summary.stats['dropped_candidates']}"
    )
    assert len(out) == n
    if args.semantic:
        semantic_cost(ds, index, args, mine)


def semantic_cost(ds: datasets.Dataset, index: BM25Index, args: argparse.Namespace, mine) -> None:
    """The embedding paths' own cost, with rare_hf.testing's hashed embeddings over HTTP: what the semantic guard
    sends from an empty cache and its time with every vector cached (cosines, re-picks, cache reads); the corpus
    embedding of dense mining apart; dense and hybrid mining with the corpus vectors stored beside the index —
    each against BM25 mining without an embedder, alternated in one process."""
    from rare_hf.testing import LocalTeacher

    n, rows = len(ds), []
    with tempfile.TemporaryDirectory() as tmp, LocalTeacher(keep_log=False) as server:
        embedder = rare_hf.Embedder("hashed", base_url=server.url, cache_dir=f"{tmp}/cache", batch_size=256)
        index.save(f"{tmp}/index")  # the dense vectors are stored beside it

        def run(**kwargs) -> tuple[float, rare_hf.StepSummary]:
            t0 = time.perf_counter()
            _, summary = rare_hf.add_hard_negatives(
                ds, num_neg=args.num_neg, embedder=embedder, show_progress=False, return_summary=True, **kwargs
            )
            return time.perf_counter() - t0, summary

        t_cold, cold = run(corpus=index)
        t_embed_corpus, dense_cold = run(corpus=index, method="dense")
        times = {"semantic guard (vectors cached)": [], "dense (vectors stored)": [], "hybrid (vectors stored)": []}
        t_plain = float("inf")
        for _ in range(args.repeats):
            for name, kwargs in zip(times, ({}, {"method": "dense"}, {"method": "hybrid"})):
                times[name].append(run(corpus=index, **kwargs)[0])
            t0 = time.perf_counter()
            mine()
            t_plain = min(t_plain, time.perf_counter() - t0)
        embedder.close()
    usage = cold.usage
    print(
        f"semantic guard, empty cache: {t_cold:8.1f} s, {usage['requests']:,} requests, {usage['prompt_tokens']:,} "
        f"tokens ({usage['prompt_tokens'] / n:.0f} a question); cut-off {cold.params['semantic_threshold_used']}, "
        f"{cold.stats['dropped_candidates']['similar to the positive (embeddings)']:,} dropped"
    )
    t_dense = min(times["dense (vectors stored)"])
    print(
        f"dense, corpus not embedded:  {t_embed_corpus:8.1f} s ({t_embed_corpus - t_dense:.1f} s embedding "
        f"{len(index):,} documents, {dense_cold.usage['requests']:,} requests; the rest mining)"
    )
    for name, measured in times.items():
        rows.append(f"{name:<34}{min(measured):8.1f} s   vs {t_plain:.1f} s BM25 alone: {min(measured) / t_plain:.2f}x")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

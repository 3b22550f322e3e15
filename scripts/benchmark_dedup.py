"""Near-duplicate documents: recall and precision on planted copies, cost against mining, requests saved.

1. Planted copies. The benchmark corpus of ``benchmark_negatives.py`` (Markov text over the standard library's
   docstrings) plus, for one document in ten, a copy edited at a rate of 0 %, 0.5 %, 1 %, 2 %, 5 %, 10 % or 20 %
   (that share of words replaced by corpus words; case and punctuation changed too), placed later in the corpus.
   Recall per edit rate: copies ``dedup_documents`` joins to their original. Precision: flagged documents that
   are planted copies. The exact Jaccard of each planted pair (5-word shingles) is printed beside it, so the
   threshold's meaning is visible.
2. Cost. ``dedup_documents`` against ``add_hard_negatives`` (index build and mining, one question per document)
   on the same documents in the same process, at 10,000 and 100,000 documents.
3. Requests saved on a real corpus with duplicates: the documentation of Django 1.11.29 and 4.2.16 merged, split
   into sections (two editions of one reference work; many sections unchanged or lightly edited between them).
   The whole pipeline runs over HTTP against ``rare_hf.testing.LocalTeacher`` with and without the ``dedup``
   step and the teacher's request counts are compared; rows whose negatives include a near-duplicate of their
   positive are counted in the run without it.

Usage:
    python scripts/benchmark_dedup.py                      # all three (downloads the Django sdists, 30 MB)
    python scripts/benchmark_dedup.py --sizes 10000 --skip-django
    python scripts/benchmark_dedup.py --docs-dir /tmp/dj   # Django-1.11.29/ and Django-4.2.16/ already there
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_false_negatives import sections  # noqa: E402
from benchmark_negatives import generate  # noqa: E402

import rare_hf  # noqa: E402
import rare_hf.testing  # noqa: E402
from rare_hf.retrieval.ngrams import shingle_csr  # noqa: E402

RATES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
DJANGO = ("1.11.29", "4.2.16")


def planted(num_docs: int, seed: int = 0) -> tuple[list[str], dict[int, tuple[int, float]]]:
    """The corpus with edited copies appended: texts, and {copy position: (original position, edit rate)}."""
    docs, _ = generate(num_docs, seed)
    rng = random.Random(seed + 1)
    vocabulary = [w for d in docs[:2000] for w in d.split()]
    copies: dict[int, tuple[int, float]] = {}
    texts = list(docs)
    for n, original in enumerate(rng.sample(range(num_docs), num_docs // 10)):
        rate = RATES[n % len(RATES)]
        words = [rng.choice(vocabulary) if rng.random() < rate else w for w in docs[original].split()]
        copy = " ".join(words)
        copy = copy.upper() if n % 2 else copy.replace(".", " ;").replace(",", "")
        copies[len(texts)] = (original, rate)
        texts.append(copy)
    return texts, copies


def exact_jaccard(a: str, b: str) -> float:
    indptr, hashes = shingle_csr([a, b], 5)
    sa, sb = set(hashes[: indptr[1]].tolist()), set(hashes[indptr[1] :].tolist())
    return len(sa & sb) / max(1, len(sa | sb))


def recall_precision(num_docs: int) -> None:
    texts, copies = planted(num_docs)
    out = rare_hf.dedup_documents(datasets.Dataset.from_dict({"text": texts}), show_progress=False)
    first, ids = out["duplicate_of"], out["doc_id"]
    print(f"\n## Planted copies: {num_docs:,} documents + {len(copies):,} edited copies, threshold 0.7")
    print(
        f"{'edit rate':>10}{'copies':>8}{'found':>8}{'recall':>8}{'median exact Jaccard':>22}{'recall at >= 0.7':>18}"
    )
    above = found_above = 0
    for rate in RATES:
        pairs = [(c, o) for c, (o, r) in copies.items() if r == rate]
        hit = [first[c] == ids[o] for c, o in pairs]
        jaccards = [exact_jaccard(texts[o], texts[c]) for c, o in pairs]
        median = sorted(jaccards)[len(jaccards) // 2]
        over = [h for h, j in zip(hit, jaccards) if j >= 0.7]
        above, found_above = above + len(over), found_above + sum(over)
        share = f"{sum(over)}/{len(over)}" if over else "-"
        print(f"{rate:>10.1%}{len(pairs):>8}{sum(hit):>8}{sum(hit) / len(pairs):>8.1%}{median:>22.2f}{share:>18}")
    print(f"recall over every planted pair at or above the threshold: {found_above / max(1, above):.1%}")
    flagged = [i for i, f in enumerate(first) if f is not None]
    true = sum(i in copies and first[i] == ids[copies[i][0]] for i in flagged)
    print(f"flagged {len(flagged):,}: {true:,} planted copies, precision {true / max(1, len(flagged)):.1%}")


def cost(num_docs: int, repeats: int) -> None:
    docs, questions = generate(num_docs, 0)
    ds = datasets.Dataset.from_dict({"text": docs, "question": questions})
    rare_hf.add_hard_negatives(ds.select(range(200)), show_progress=False)  # numba compiled outside the timings
    rare_hf.dedup_documents(ds.select(range(2000)), show_progress=False)
    t_dedup = t_mine = float("inf")
    for _ in range(repeats):  # alternated, best of each
        t0 = time.perf_counter()
        rare_hf.dedup_documents(ds, show_progress=False)
        t_dedup = min(t_dedup, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rare_hf.add_hard_negatives(ds, show_progress=False)
        t_mine = min(t_mine, time.perf_counter() - t0)
    print(
        f"{num_docs:>9,} documents: dedup {t_dedup:6.2f} s, hard negatives (index + mining) {t_mine:6.1f} s, "
        f"dedup / mining = {t_dedup / t_mine:.3f}"
    )


def django(folder: Path) -> None:
    import benchmark_false_negatives as fn

    fn.VERSIONS = DJANGO  # download() fetches these
    fn.download(folder)
    texts = [t for v in DJANGO for t in sections(folder / f"Django-{v}").values()]
    ds = datasets.Dataset.from_dict({"text": texts})
    marked = rare_hf.dedup_documents(ds, show_progress=False)
    cluster = {t: f or i for t, f, i in zip(marked["text"], marked["duplicate_of"], marked["doc_id"])}
    print(f"\n## Django {DJANGO[0]} + {DJANGO[1]} documentation: {len(ds):,} sections")
    print(f"near-duplicate sections: {sum(f is not None for f in marked['duplicate_of']):,}")
    steps = ["questions", "hard_negatives", "reasoning"]
    with tempfile.TemporaryDirectory() as tmp, rare_hf.testing.LocalTeacher(keep_log=False) as teacher:
        for name, run_steps in (("without dedup", steps), ("with dedup", ["dedup", *steps])):
            llm = rare_hf.LLM("demo", base_url=teacher.url, api_key="EMPTY", cache_dir=f"{tmp}/{name}")
            t0 = time.perf_counter()
            out, summary = rare_hf.build_rare_dataset(
                ds, llm, steps=run_steps, show_progress=False, return_summary=True
            )
            seconds = time.perf_counter() - t0
            served = sum(
                any(cluster[n] == cluster[t] for n in negatives)
                for t, negatives in zip(out["text"], out["hard_negatives"])
            )
            print(
                f"{name:>14}: {summary.usage()['requests']:>6,} requests, {len(out):>6,} rows, {served:>4} rows with a "
                f"near-duplicate of the positive among the negatives, {seconds:6.1f} s"
            )
            llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planted-docs", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--docs-dir", type=Path, default=None, help="where the Django sdists are (or go)")
    parser.add_argument("--skip-django", action="store_true")
    args = parser.parse_args()
    recall_precision(args.planted_docs)
    print("\n## Cost against mining (same documents, same process, best of each)")
    for size in args.sizes:
        cost(size, args.repeats)
    if not args.skip_django:
        with tempfile.TemporaryDirectory() as tmp:
            django(args.docs_dir or Path(tmp))


if __name__ == "__main__":
    main()

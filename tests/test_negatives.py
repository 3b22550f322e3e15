"""add_hard_negatives with real bm25s indexes."""

from __future__ import annotations

import math
import random
from collections import Counter

import datasets
import numpy as np
import pytest

import rare_hf
from rare_hf import BM25Index
from rare_hf.retrieval import bm25 as bm25_module
from rare_hf.retrieval import kernels as kernels_module

TOPICS = {
    "cardio": "heart artery vein blood pressure stroke anticoagulant warfarin rhythm atrial valve".split(),
    "law": "contract consideration offer acceptance breach damages tort negligence court precedent".split(),
    "geo": "soil liquefaction earthquake foundation pile clay sand settlement groundwater slope".split(),
    "ml": "gradient descent overfitting regularization dropout batch learning rate network loss".split(),
}
LOOSE = {"max_score_ratio": None, "max_overlap": None, "show_progress": False}
FILLER = "about with during under between before after across into through".split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = TOPICS[list(TOPICS)[i % len(TOPICS)]]
        docs.append(
            " ".join(
                rng.choice(words) if rng.random() < 0.7 else rng.choice(FILLER) for _ in range(rng.randint(20, 40))
            )
            + f" marker{i}"
        )
    return docs


def make_questions(docs: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(d.split()[:-1], 5)) + "?" for d in docs]


def dataset(n: int = 40) -> datasets.Dataset:
    docs = make_docs(n)
    return datasets.Dataset.from_dict({"text": docs, "question": make_questions(docs)})


def brute_force(index: BM25Index, question: str, k1: float = 0.9, b: float = 0.4) -> list[tuple[float, int]]:
    """Lucene BM25 computed directly from the token lists, best first (ties: lower position)."""
    docs = [
        index.tokenizer.tokenize([t], update_vocab=False, return_as="ids", show_progress=False)[0]
        for t in list(index.corpus["text"])
    ]
    query = index.tokenize([question])[0]
    n, avg = len(docs), sum(map(len, docs)) / len(docs)
    df = Counter(t for d in docs for t in set(d))
    scored = []
    for pos, doc in enumerate(docs):
        tf = Counter(doc)
        score = 0.0
        for t in query:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(doc) / avg))
        scored.append((score, pos))
    return sorted(scored, key=lambda x: (-x[0], x[1]))


def test_matches_brute_force_bm25_in_order() -> None:
    ds = dataset(40)
    out = rare_hf.add_hard_negatives(ds, num_neg=5, max_score_ratio=None, max_overlap=None, show_progress=False)
    index = BM25Index.build(ds["text"], show_progress=False)
    for row in out:
        expected = [
            (s, p) for s, p in brute_force(index, row["question"]) if s > 0 and index.corpus[p]["text"] != row["text"]
        ][:5]
        assert row["hard_negatives"] == [index.corpus[p]["text"] for _, p in expected]
        assert row["hard_negatives_scores"] == pytest.approx([s for s, _ in expected], rel=1e-4)
        assert row["hard_negatives_scores"] == sorted(row["hard_negatives_scores"], reverse=True)
        assert len(row["hard_negatives"]) == 5
        assert row["hard_negatives_ids"] == [index.corpus[p]["doc_id"] for _, p in expected]


def test_positive_score_matches_bm25s_even_outside_the_top_k() -> None:
    ds = dataset(40)
    index = BM25Index.build(ds["text"], show_progress=False)
    for question, text in zip(ds["question"][:10], ds["text"][:10]):
        pos = index.position_of(text)
        full = index.retriever.get_scores(index.tokenize([question])[0])
        assert index.score(index.tokenize([question])[0], pos) == pytest.approx(float(full[pos]), rel=1e-5)
    out = rare_hf.add_hard_negatives(ds, num_neg=1, show_progress=False)
    expected = dict(brute_force(index, ds["question"][0])[i][::-1] for i in range(40))
    assert out[0]["hard_negatives_positive_score"] == pytest.approx(
        expected[index.position_of(ds["text"][0])], rel=1e-4
    )


def test_positive_and_its_exact_duplicates_are_never_returned() -> None:
    docs = make_docs(30)
    copies = [docs[0].upper(), "  " + docs[0].replace(" ", "   ") + "\n"]
    ds = datasets.Dataset.from_dict(
        {
            "text": docs + copies,
            "question": make_questions(docs) + make_questions(docs)[:1] * 2,
            "doc_id": [f"d{i}" for i in range(32)],
        }
    )
    out = rare_hf.add_hard_negatives(ds, num_neg=10, max_score_ratio=None, max_overlap=None, show_progress=False)
    normalise = lambda t: " ".join(t.lower().split())  # noqa: E731
    for row in out:
        assert all(normalise(n) != normalise(row["text"]) for n in row["hard_negatives"])
        assert row["doc_id"] not in row["hard_negatives_ids"]
    assert "d30" not in out[0]["hard_negatives_ids"] and "d31" not in out[0]["hard_negatives_ids"]
    # The copies were indexed once (under the first id), not three times.
    assert all(normalise(docs[0]) not in map(normalise, row["hard_negatives"]) for row in out.select([0]))


def test_overlapping_chunk_of_the_positive_is_filtered() -> None:
    docs = make_docs(30)
    words = docs[0].split()
    chunk = " ".join(words[len(words) // 4 :] + ["extra", "tail", "words"])  # overlaps ~75% of the positive
    ds = datasets.Dataset.from_dict(
        {"text": docs + [chunk], "question": [" ".join(words[-8:-1])] + make_questions(docs)[1:] + ["q"]}
    )
    unfiltered = {"max_score_ratio": None, "max_overlap": None, "exclude_shared_passages": False}
    kept = rare_hf.add_hard_negatives(ds, num_neg=3, **unfiltered, show_progress=False)
    assert chunk in kept[0]["hard_negatives"]  # without the filters it is mined as a "negative"
    for filters, reason in (
        ({"exclude_shared_passages": False}, "overlaps the positive"),
        ({"max_overlap": None}, "shares a passage with the positive"),
    ):
        filtered, summary = rare_hf.add_hard_negatives(
            ds, num_neg=3, max_score_ratio=None, **filters, show_progress=False, return_summary=True
        )
        assert chunk not in filtered[0]["hard_negatives"] and len(filtered[0]["hard_negatives"]) == 3
        assert summary.stats["dropped_candidates"][reason] >= 1


def test_score_margin_drops_candidates_too_close_to_the_positive() -> None:
    ds = dataset(40)
    out = rare_hf.add_hard_negatives(ds, num_neg=3, max_score_ratio=0.5, max_overlap=None, show_progress=False)
    for row in out:
        if row["hard_negatives_positive_score"] and row["hard_negatives_scores"] is not None:
            assert all(s <= 0.5 * row["hard_negatives_positive_score"] + 1e-6 for s in row["hard_negatives_scores"])
    loose = rare_hf.add_hard_negatives(ds, num_neg=3, max_score_ratio=None, max_overlap=None, show_progress=False)
    assert out["hard_negatives"] != loose["hard_negatives"]


def test_skip_top_skips_the_best_candidates() -> None:
    ds = dataset(40)
    base = rare_hf.add_hard_negatives(ds, num_neg=6, max_score_ratio=None, max_overlap=None, show_progress=False)
    skipped = rare_hf.add_hard_negatives(
        ds, num_neg=3, skip_top=3, max_score_ratio=None, max_overlap=None, show_progress=False
    )
    for a, b in zip(base, skipped):
        assert b["hard_negatives"] == a["hard_negatives"][3:6]


def test_tiny_corpus_gives_what_exists_and_records_the_shortfall() -> None:
    ds = datasets.Dataset.from_dict(
        {
            "text": [
                "warfarin dose depends on inr and vitamin k",
                "warfarin interacts with amiodarone strongly",
                "warfarin bleeding risk grows with age",
            ],
            "question": [
                "how should warfarin dose change?",
                "which drugs interact with warfarin?",
                "who bleeds on warfarin?",
            ],
        }
    )
    out, summary = rare_hf.add_hard_negatives(
        ds, num_neg=3, max_score_ratio=None, max_overlap=None, show_progress=False, return_summary=True
    )
    assert [len(n) for n in out["hard_negatives"]] == [2, 2, 2]
    assert summary.stats["short"] == 3 and summary.stats["negatives_per_row"] == {"2": 3}
    assert (summary.ok, summary.skipped) == (3, 0)


def test_null_questions_are_skipped_and_counted() -> None:
    ds = dataset(20)
    questions = list(ds["question"])
    questions[3] = None
    questions[7] = "zzzqx yyyqx"  # no term of the corpus
    ds = ds.remove_columns("question").add_column("question", questions)
    out, summary = rare_hf.add_hard_negatives(
        ds, max_score_ratio=None, max_overlap=None, show_progress=False, return_summary=True
    )
    assert out[3]["hard_negatives"] is None and out[3]["hard_negatives_error"].startswith(
        "skipped: question is missing"
    )
    assert out[7]["hard_negatives"] is None and "no term" in out[7]["hard_negatives_error"]
    assert summary.skipped == 2 and summary.ok == 18
    assert all(len(n) == 3 for i, n in enumerate(out["hard_negatives"]) if i not in (3, 7))


def test_external_corpus_and_saved_index_give_the_same_results(tmp_path) -> None:
    docs = make_docs(60)
    ds = datasets.Dataset.from_dict({"text": docs[:20], "question": make_questions(docs)[:20]})
    from_list = rare_hf.add_hard_negatives(ds, corpus=docs, **LOOSE)
    corpus_ds = datasets.Dataset.from_dict({"text": docs})
    from_ds = rare_hf.add_hard_negatives(ds, corpus=corpus_ds, **LOOSE)
    index = BM25Index.build(docs, show_progress=False)
    index.save(tmp_path / "index")
    from_path = rare_hf.add_hard_negatives(ds, corpus=str(tmp_path / "index"), **LOOSE)
    from_loaded = rare_hf.add_hard_negatives(ds, corpus=BM25Index.load(tmp_path / "index"), **LOOSE)
    assert (
        from_list["hard_negatives"]
        == from_ds["hard_negatives"]
        == from_path["hard_negatives"]
        == from_loaded["hard_negatives"]
    )
    assert from_list["hard_negatives_scores"] == from_path["hard_negatives_scores"]
    # The larger corpus changes the results compared to the split's own documents.
    own = rare_hf.add_hard_negatives(ds, **LOOSE)
    assert own["hard_negatives"] != from_list["hard_negatives"]
    assert all(len(n) == 3 for n in from_list["hard_negatives"])
    assert isinstance(BM25Index.load(tmp_path / "index").retriever.scores["data"], np.memmap)


def test_deterministic_and_dataset_dict() -> None:
    ds = dataset(40)
    first = rare_hf.add_hard_negatives(ds, show_progress=False)
    second = rare_hf.add_hard_negatives(ds, show_progress=False)
    assert first["hard_negatives"] == second["hard_negatives"]
    dd = datasets.DatasetDict({"train": ds.select(range(30)), "test": ds.select(range(30, 40))})
    out, summary = rare_hf.add_hard_negatives(dd, show_progress=False, return_summary=True)
    assert len(out["train"]) == 30 and len(out["test"]) == 10 and summary.rows_out == 40
    test_texts = set(dd["test"]["text"])
    mined = [row for row in out["test"]["hard_negatives"] if row is not None]  # short rows failed: None
    assert mined and all(n in test_texts for row in mined for n in row)  # each split mines itself


def test_numba_backend_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    ds = dataset(40)
    numpy_out = rare_hf.add_hard_negatives(ds, show_progress=False)
    monkeypatch.setattr(bm25_module, "_NUMBA_MIN_WORK", 0)
    monkeypatch.setattr(kernels_module, "NUMBA_MIN_CELLS", 0)
    numba_out = rare_hf.add_hard_negatives(ds, show_progress=False)
    # Same scores row by row; documents tied on score at the cut-off may differ between backends.
    for a, b in zip(numba_out["hard_negatives_scores"], numpy_out["hard_negatives_scores"]):
        assert a == pytest.approx(b, rel=1e-5)
    same = sum(a == b for a, b in zip(numba_out["hard_negatives"], numpy_out["hard_negatives"]))
    assert same >= 30


def test_bad_input_is_refused() -> None:
    ds = dataset(5)
    with pytest.raises(ValueError, match=r"Column 'query' \(from input_question_key=\) not found"):
        rare_hf.add_hard_negatives(ds, input_question_key="query")
    with pytest.raises(ValueError, match="num_neg must be >= 1"):
        rare_hf.add_hard_negatives(ds, num_neg=0)
    with pytest.raises(ValueError, match="corpus is empty"):
        rare_hf.add_hard_negatives(ds, corpus=["", "   "])
    with pytest.raises(ValueError, match=r"\['hard_negatives'\] already exist"):
        rare_hf.add_hard_negatives(ds.add_column("hard_negatives", [["x"]] * 5))
    with pytest.raises(TypeError, match="corpus must be"):
        rare_hf.add_hard_negatives(ds, corpus=42)

"""Near-duplicate documents and questions: planted copies found, never paid for twice, never each other's
negatives — through the real pipeline over HTTP and on real bm25s indexes."""

from __future__ import annotations

import random

import datasets
import pytest

import rare_hf
from rare_hf.retrieval.minhash import near_duplicates

_LETTERS = random.Random(7)
VOCAB = ["".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for _ in range(5000)]


def _document(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n)) + "."


def _edited(rng: random.Random, text: str, rate: float) -> str:
    words = text.rstrip(".").split()
    return " ".join(rng.choice(VOCAB) if rng.random() < rate else w for w in words).upper() + " !"


def planted_corpus(num_docs: int = 60, copies: int = 12, seed: int = 0) -> tuple[datasets.Dataset, dict[int, int]]:
    """Distinct documents plus ``copies`` edited copies (1 % of words changed, case and punctuation changed),
    each placed later in the corpus; returns the dataset and {copy row: original row}."""
    rng = random.Random(seed)
    texts = [_document(rng) for _ in range(num_docs)]
    planted = {}
    for original in range(copies):
        planted[len(texts)] = original
        texts.append(_edited(rng, texts[original], 0.01))
    return datasets.Dataset.from_dict({"text": texts}), planted


def _shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    words = [w.strip(".!") for w in text.lower().split() if w.strip(".!")]
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_near_duplicates_finds_planted_copies_and_nothing_else() -> None:
    rng = random.Random(1)
    texts = [_document(rng) for _ in range(300)]
    planted = {}
    for i, rate in enumerate([0.0, 0.01, 0.02] * 10):
        planted[len(texts)] = i
        texts.append(_edited(rng, texts[i], rate))
    texts += [None, "", "   "]
    clusters = near_duplicates(texts, threshold=0.7)
    found = {int(j): int(clusters.representative[j]) for j in clusters.duplicates}
    # every pair at or above the threshold by brute force over all pairs, and nothing else
    sets = [_shingles(t) for t in texts[:330]]
    truth = {j: i for i in range(330) for j in range(i + 1, 330) if _jaccard(sets[i], sets[j]) >= 0.7}
    assert found == truth
    assert len(truth) >= 25 and set(truth.items()) <= set(planted.items())
    assert clusters.representative[-3:].tolist() == [-1, -1, -1]
    assert all(abs(clusters.similarity[j] - _jaccard(sets[i], sets[j])) < 1e-6 for j, i in truth.items())
    # a copy with a fifth of its words changed is not a near-duplicate
    far = near_duplicates([texts[0], _edited(rng, texts[0], 0.2)], threshold=0.7)
    assert len(far.duplicates) == 0


def test_short_texts_and_cjk_are_compared_by_their_units() -> None:
    clusters = near_duplicates(
        ["ab", "AB!", "东京大学的历史很长", "东京大学的历史很长。", "东京大学的学生很多"], 0.7, 3
    )
    assert clusters.representative.tolist() == [0, 0, 2, 2, 4]


def test_duplicates_get_no_request_and_are_never_each_others_negatives(make_llm, teacher) -> None:
    ds, planted = planted_corpus()
    llm = make_llm()
    out, summary = rare_hf.build_rare_dataset(
        ds, llm, steps=["dedup", "questions", "hard_negatives", "reasoning"], num_neg=3, show_progress=False,
        return_summary=True,
    )  # fmt: skip
    # one question request per kept document and one reasoning request per mined row, none for the 12 copies
    reasoning = [r for r in teacher.requests if "# Retrieved Documents" in r["messages"][-1]["content"]]
    assert len(teacher.requests) - len(reasoning) == 60
    short = summary.step("hard_negatives").failed  # rows BM25 found too few negatives for (no duplicate among them)
    assert short <= 5 and len(reasoning) == 60 - short
    assert len(out) == 60 - short and summary.rows_out == 60 - short
    assert summary.filtered == {"duplicate": 12} and summary.dropped_failed == short
    assert "filtered out: 12 duplicate" in summary.table()
    copies = {ds[c]["text"] for c in planted}
    originals = {ds[o]["text"] for o in planted.values()}
    kept = set(out["text"])
    assert originals <= kept and not copies & kept
    copy_of = {ds[o]["text"]: ds[c]["text"] for c, o in planted.items()}
    for row in out:  # the copy indexed beside its original is never served as the original's negative
        if row["text"] in copy_of:
            assert copy_of[row["text"]] not in row["hard_negatives"]
    assert sum(row["hard_negatives_dropped"]["duplicate"] for row in out) >= 6
    dedup = summary.step("dedup")
    assert dedup.stats["duplicates"] == 12 and dedup.skipped == 12 and dedup.ok == 60
    assert summary.step("questions").failure_reasons == {"dropped": 12}


def test_without_dedup_copies_come_back_as_negatives() -> None:
    """The cluster guard on its own (the lexical guards, which catch most copies too, turned off): without it
    the copies are the originals' best negatives."""
    ds, planted = planted_corpus()
    questions = [" ".join(t.split()[:12]) for t in ds["text"]]
    ds = ds.add_column("question", questions)
    off = {"max_similarity": None, "max_score_ratio": None, "max_overlap": None, "exclude_shared_passages": False}
    plain = rare_hf.add_hard_negatives(ds, num_neg=3, show_progress=False, **off)
    marked = rare_hf.dedup_documents(ds).remove_columns("drop_reason")  # every row mined, copies included
    guarded, summary = rare_hf.add_hard_negatives(marked, num_neg=3, show_progress=False, return_summary=True, **off)
    copy_text = {o: ds[c]["text"] for c, o in planted.items()}
    served = sum(copy_text[o] in plain[o]["hard_negatives"] for o in copy_text)
    assert served >= 10
    assert not any(copy_text[o] in guarded[o]["hard_negatives"] for o in copy_text)
    assert all(len(guarded[o]["hard_negatives"]) == 3 for o in copy_text)
    # the copies' own rows are guarded too: their original is in their cluster
    assert not any(ds[o]["text"] in guarded[c]["hard_negatives"] for c, o in planted.items())
    dropped = sum(guarded[o]["hard_negatives_dropped"]["duplicate"] for o in copy_text)
    assert (
        dropped >= 10
        and summary.stats["dropped_candidates"]["near-duplicate of the positive (dedup)"] >= 2 * dropped - 4
    )


def test_dedup_columns_rerun_and_errors() -> None:
    ds, planted = planted_corpus(num_docs=20, copies=4)
    out = rare_hf.dedup_documents(ds, show_progress=False)
    assert out["duplicate_of"][20:] == [out["doc_id"][o] for o in planted.values()]
    assert out["duplicate_of"][:20] == [None] * 20
    assert all(r.startswith("duplicate: near-duplicate of document ") for r in out["drop_reason"][20:])
    assert 0.7 <= min(out["duplicate_similarity"][20:]) < 1.0
    with pytest.raises(ValueError, match="already exist"):
        rare_hf.dedup_documents(out)
    strict = rare_hf.dedup_documents(out, threshold=1.0, overwrite=True)
    # its own earlier reasons replaced, not kept: only copies that differ in case and punctuation alone remain
    same = [r is not None and s == 1.0 for r, s in zip(out["drop_reason"], out["duplicate_similarity"])]
    assert [r is not None for r in strict["drop_reason"]] == same and 0 < sum(same) < 4
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        rare_hf.dedup_documents(ds, threshold=0)
    with pytest.raises(ValueError, match="input_text_key"):
        rare_hf.dedup_documents(ds, input_text_key="body")


def test_dedup_questions_drops_later_repeats_before_mining() -> None:
    rng = random.Random(3)
    texts = [_document(rng) for _ in range(30)]
    questions = [" ".join(rng.sample(t.rstrip(".").split(), 15)) + "?" for t in texts]
    questions[20] = questions[3].replace("?", " please?")  # a repeat with one word more
    questions[25] = questions[3]
    ds = datasets.Dataset.from_dict({"text": texts, "question": questions})
    marked, summary = rare_hf.dedup_questions(ds, return_summary=True)
    assert [i for i, r in enumerate(marked["drop_reason"]) if r] == [20, 25]
    assert marked["question_duplicate_of"][25] == "3"  # no doc_id column: the row number
    assert summary.stats["duplicates"] == 2
    mined, mined_summary = rare_hf.add_hard_negatives(marked, num_neg=2, show_progress=False, return_summary=True)
    assert mined["hard_negatives"][20] is None and mined["hard_negatives_error"][25].startswith(
        "dropped: duplicate question"
    )
    assert mined_summary.failure_reasons == {"dropped": 2} and mined_summary.ok == 28
    # documents of dropped rows stay in the corpus
    assert any(texts[20] in (n or []) or texts[25] in (n or []) for n in mined["hard_negatives"])


def test_dedup_follows_a_selected_order() -> None:
    """A ``select``ed or filtered dataset keeps its table underneath: the step must read rows in the order shown."""
    ds, planted = planted_corpus(num_docs=20, copies=4)
    backwards = ds.select(range(len(ds) - 1, -1, -1))  # the copies now come first and are kept
    out = rare_hf.dedup_documents(backwards)
    flagged = {out[i]["text"] for i, first in enumerate(out["duplicate_of"]) if first is not None}
    assert flagged == {ds[o]["text"] for o in planted.values()}
    questions = rare_hf.dedup_questions(backwards.add_column("question", list(backwards["text"])))
    assert {r["text"] for r in questions if r["drop_reason"]} == flagged
    contaminated = rare_hf.decontaminate(
        backwards.filter(lambda r: r["text"] != ds[0]["text"]), against=[ds[10]["text"]]
    )
    assert [r["text"] for r in contaminated if r["contaminated"]] == [ds[10]["text"]]  # document 10 has no copy

"""Easy rows: planted look-up questions (a phrase lifted from the positive) flagged and dropped; reasoning
questions in other words kept — on real bm25s indexes and through the pipeline."""

from __future__ import annotations

import random

import datasets
import pytest

import rare_hf
from rare_hf.retrieval.lexical import lexical_overlap

_LETTERS = random.Random(11)
VOCAB = ["".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(3000)]
SHARED = VOCAB[:300]  # words every document draws on


def corpus(n: int = 80, seed: int = 0) -> tuple[datasets.Dataset, set[int]]:
    """Documents of shared and own words. A third of the rows (the planted set) ask about the run of their
    document's words where its own terms are densest, verbatim; the others ask in words their document does not
    hold, plus two of its own."""
    rng = random.Random(seed)
    texts, questions, trivial = [], [], set()
    for i in range(n):
        own = VOCAB[300 + 30 * i : 330 + 30 * i]
        words = [rng.choice(own) if rng.random() < 0.3 else rng.choice(SHARED) for _ in range(150)]
        texts.append(" ".join(words))
        if i % 3 == 0:
            trivial.add(i)
            start = max(range(140), key=lambda k: sum(w in own for w in words[k : k + 10]))
            questions.append("What is " + " ".join(words[start : start + 10]) + "?")
        else:
            elsewhere = sorted(set(SHARED) - set(words))
            questions.append(" ".join(rng.sample(elsewhere, 8) + rng.sample(own, 2)) + "?")
    return datasets.Dataset.from_dict({"text": texts, "question": questions}), trivial


def test_lexical_overlap_counts_content_words() -> None:
    assert lexical_overlap("What is the boiling point of water?", "water boils at a point") == pytest.approx(2 / 3)
    assert lexical_overlap("What is it?", "anything") is None
    assert lexical_overlap(None, "x") is None


def test_planted_lookups_are_flagged_and_dropped_and_nothing_else() -> None:
    ds, trivial = corpus()
    mined = rare_hf.add_hard_negatives(ds, num_neg=3, show_progress=False)
    flagged, summary = rare_hf.add_easiness(mined, return_summary=True)
    assert {i for i, e in enumerate(flagged["question_easy"]) if e} == trivial
    assert summary.stats["easy"] == len(trivial) and summary.ok == len(ds)  # only flagged
    assert all(flagged["question_lexical_overlap"][i] == 1.0 for i in trivial)
    assert all(flagged["question_score_margin"][i] >= 0.5 for i in trivial)
    assert len(summary.stats["lexical_overlap_deciles"]) == 11
    dropped, summary = rare_hf.add_easiness(mined, drop_easy=True, return_summary=True)
    reasons = dropped["drop_reason"]
    assert {i for i, r in enumerate(reasons) if r} == trivial
    assert all(r.startswith("easy: positive ranked first by a margin of ") for r in reasons if r)
    assert summary.skipped == len(trivial)


def test_easiness_in_the_pipeline_drops_before_reasoning(make_llm, teacher) -> None:
    ds, trivial = corpus(30)
    out, summary = rare_hf.build_rare_dataset(
        ds.add_column("scenario", ["A field engineer asks."] * len(ds)),
        make_llm(),
        steps=["hard_negatives", "easiness", "reasoning"],
        easiness_kwargs={"drop_easy": True},
        show_progress=False,
        return_summary=True,
    )
    assert summary.filtered == {"easy": len(trivial)}
    assert len(teacher.requests) == 30 - len(trivial) - summary.step("hard_negatives").failed
    assert not set(out["question"]) & {ds[i]["question"] for i in trivial}
    assert out["question_easy"] == [False] * len(out)


def test_easiness_errors_name_the_argument() -> None:
    ds, _ = corpus(6)
    with pytest.raises(ValueError, match="hard_negatives_scores"):
        rare_hf.add_easiness(ds)
    with pytest.raises(ValueError, match="min_margin"):
        rare_hf.add_easiness(ds, min_margin=2)


def test_a_dry_run_with_easiness_does_not_run_it_before_mining(make_llm) -> None:
    """Only the filters a run starts with (dedup) run in a dry run; easiness needs the mined columns."""
    ds, _ = corpus(6)
    ds = ds.add_column("scenario", ["At work."] * len(ds))
    estimates = rare_hf.estimate_run(ds, make_llm(), steps=["hard_negatives", "easiness", "reasoning"])
    assert [(e.step, e.requests) for e in estimates] == [("reasoning", 6)]

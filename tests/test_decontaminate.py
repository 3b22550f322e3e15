"""Decontamination: planted benchmark passages and questions found by their 13-word runs, flagged or dropped,
against an evaluation set given as texts, a Dataset or files; through the pipeline over HTTP."""

from __future__ import annotations

import json
import random

import datasets
import numpy as np
import pytest

import rare_hf
from rare_hf.retrieval.contamination import Reference

_LETTERS = random.Random(5)
VOCAB = ["".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(4000)]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def benchmark_and_rows(seed: int = 0) -> tuple[list[str], datasets.Dataset, set[int], set[int]]:
    """An evaluation set of 20 questions of 20 words; 40 rows of which 4 questions copy a benchmark question
    (capitalised, punctuation changed) and 3 documents embed a benchmark question in the middle of their text."""
    rng = random.Random(seed)
    benchmark = [_text(rng, 20) + "?" for _ in range(20)]
    questions = [_text(rng, 18) + "?" for _ in range(40)]
    texts = [_text(rng, 100) for _ in range(40)]
    copied, embedded = {2, 11, 23, 37}, {5, 19, 30}
    for row in copied:
        questions[row] = benchmark[row % 20].upper().replace("?", " ?!")
    for row in embedded:
        words = texts[row].split()
        texts[row] = " ".join(words[:50] + benchmark[row % 20].rstrip("?").split() + words[50:])
    return benchmark, datasets.Dataset.from_dict({"question": questions, "text": texts}), copied, embedded


def test_reference_overlap_shares_and_sources() -> None:
    rng = random.Random(1)
    ref = [_text(rng, 30), _text(rng, 5)]
    share, source = Reference(ref).overlap(
        [ref[0], " ".join(ref[0].split()[:15]) + " " + _text(rng, 30), _text(rng, 30), ref[1], "", None]
    )
    assert share[0] == 1.0 and 0 < share[1] < 1 and share[2] == 0.0 and share[3] == 1.0
    assert np.isnan(share[4]) and np.isnan(share[5])
    assert source.tolist()[:4] == [0, 0, -1, 1] and source[4] == -1


def test_planted_contamination_flagged_then_dropped(tmp_path) -> None:
    benchmark, ds, copied, embedded = benchmark_and_rows()
    flagged, summary = rare_hf.decontaminate(ds, against=benchmark, return_summary=True)
    assert {i for i, c in enumerate(flagged["contaminated"]) if c} == copied | embedded
    assert [flagged["question_contamination"][i] for i in sorted(copied)] == [1.0] * 4
    assert all(0 < flagged["text_contamination"][i] < 0.2 for i in embedded)
    assert [flagged["contamination_source"][i] for i in sorted(copied)] == [r % 20 for r in sorted(copied)]
    assert summary.stats == {"contaminated": 7, "question_contaminated": 4, "text_contaminated": 3}
    assert "drop_reason" not in flagged.column_names
    # the same set from a JSONL file, only the documents checked, dropped
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"q": q, "id": i}) + "\n" for i, q in enumerate(benchmark)))
    dropped = rare_hf.decontaminate(ds, against=path, input_keys=["text"], action="drop")
    assert {i for i, r in enumerate(dropped["drop_reason"]) if r} == embedded
    assert all(r.startswith("contaminated: ") and "text's 13-grams" in r for r in dropped["drop_reason"] if r)
    # a share above which rows count: a few shared 13-grams in a long document no longer do
    lenient = rare_hf.decontaminate(ds, against=datasets.Dataset.from_dict({"q": benchmark}), max_share=0.5)
    assert {i for i, c in enumerate(lenient["contaminated"]) if c} == copied


def test_decontaminate_in_the_pipeline_before_mining(make_llm, teacher) -> None:
    benchmark, ds, copied, embedded = benchmark_and_rows()
    docs = ds.remove_columns("question")
    with pytest.raises(ValueError, match="needs the evaluation set"):
        rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "decontaminate"], show_progress=False)
    assert teacher.request_count == 0
    out, summary = rare_hf.build_rare_dataset(
        docs,
        make_llm(),
        steps=["questions", "decontaminate", "hard_negatives"],
        decontaminate_kwargs={"against": benchmark, "action": "drop"},
        show_progress=False,
        return_summary=True,
    )
    assert summary.filtered == {"contaminated": 3}
    assert not {docs[i]["text"] for i in embedded} & set(out["text"])
    assert summary.step("hard_negatives").failure_reasons.get("dropped") == 3


def test_decontaminate_errors() -> None:
    _, ds, _, _ = benchmark_and_rows()
    with pytest.raises(ValueError, match="input_keys"):
        rare_hf.decontaminate(ds, against=["x"], input_keys=["body"])
    with pytest.raises(ValueError, match="against_keys"):
        rare_hf.decontaminate(ds, against=datasets.Dataset.from_dict({"n": [1]}))
    with pytest.raises(TypeError, match="against"):
        rare_hf.decontaminate(ds, against=42)
    with pytest.raises(ValueError, match="action"):
        rare_hf.decontaminate(ds, against=["x"], action="remove")

"""Steps as objects: the streaming runner, fingerprints, custom keys through the pipeline, inputs of any shape."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, demo_responder

TOPICS = ["anticoagulation", "beta blockers", "insulin dosing", "sepsis fluids", "asthma steroids"]


def documents(n: int, tag: str = "doc") -> datasets.Dataset:
    texts = [f"{tag} {i}: {TOPICS[i % 5]} guidance for case {i} with renal and hepatic caveats." for i in range(n)]
    return datasets.Dataset.from_dict({"text": texts}, features=datasets.Features({"text": datasets.Value("string")}))


def test_a_slow_row_does_not_hold_back_rows_queued_after_it(teacher: LocalTeacher, make_llm) -> None:
    def responder(request: dict):
        slow = "doc 0:" in request["messages"][-1]["content"]
        return Reply(content=demo_responder(request), delay=2.0 if slow else 0.02)

    teacher.responder = responder
    out = rare_hf.add_questions(documents(60), make_llm(max_concurrency=8), batch_size=10, show_progress=False)
    assert out["question_error"] == [None] * 60 and teacher.request_count == 60
    first = teacher.arrivals[0]
    # Every other row, in the five batches after the slow row's, was sent while the slow row still ran.
    assert max(teacher.arrivals) - first < 1.5
    assert [text.split(":")[0] for text in out["text"]] == [f"doc {i}" for i in range(60)]  # order kept


def test_same_size_corpora_give_different_fingerprints_and_negatives(tmp_path) -> None:
    questions = datasets.Dataset.from_dict(
        {"question": [f"How is {t} adjusted in renal failure?" for t in TOPICS], "text": ["unrelated source"] * 5}
    )
    questions.save_to_disk(str(tmp_path / "q"))
    on_disk = datasets.load_from_disk(str(tmp_path / "q"))  # cache files live next to it, as in real runs
    corpus_a = [f"{t} dosing is adjusted in renal failure (guide A)." for t in TOPICS]
    corpus_b = [f"{t} tapering is monitored in hepatic failure (guide B)." for t in TOPICS]
    out_a = rare_hf.add_hard_negatives(on_disk, corpus=corpus_a, num_neg=1, max_score_ratio=None, show_progress=False)
    out_b = rare_hf.add_hard_negatives(on_disk, corpus=corpus_b, num_neg=1, max_score_ratio=None, show_progress=False)
    assert out_a._fingerprint != out_b._fingerprint
    assert all("guide A" in n[0] for n in out_a["hard_negatives"])
    assert all("guide B" in n[0] for n in out_b["hard_negatives"])
    index_a, index_b = rare_hf.BM25Index.build(corpus_a), rare_hf.BM25Index.build(corpus_b)
    assert len(index_a) == len(index_b) and index_a.fingerprint != index_b.fingerprint
    assert rare_hf.BM25Index.build(list(corpus_a)).fingerprint == index_a.fingerprint


def test_custom_keys_flow_through_the_pipeline_and_the_card(teacher: LocalTeacher, make_llm) -> None:
    ds, summary = rare_hf.build_rare_dataset(
        rare_hf.load_sample_documents().select(range(8)),
        make_llm(),
        question_kwargs={"output_question_key": "q", "output_scenario_key": "situation"},
        negatives_kwargs={"output_negatives_key": "negs", "num_neg": 2},
        reasoning_kwargs={"output_key": "why", "output_answer_key": "verdict"},
        show_progress=False,
        return_summary=True,
    )
    assert [s.ok for s in summary.steps] == [8, 8, 8] and len(ds) == 8
    assert {"q", "situation", "negs", "why", "verdict"} <= set(ds.column_names)
    assert "question" not in ds.column_names and all(len(n) == 2 for n in ds["negs"])
    card = rare_hf.hub.build_card(
        rare_hf.hub.DatasetCard("---\n---\n"), ds, num_rows=len(ds), repo_id="me/x", summary=summary
    )
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[3].strip()
        for line in str(card).splitlines()
        if line.startswith("| `")
    }
    assert rows["q"].startswith("A standalone") and rows["negs_ids"] == "doc_id of each hard negative."
    assert rows["why_input_truncated"] and rows["verdict"].startswith("The teacher's final answer")


def test_step_kwargs_are_checked_before_any_request(teacher: LocalTeacher, make_llm) -> None:
    with pytest.raises(ValueError, match=r"question_kwargs: add_questions takes no argument \['bogus'\]"):
        rare_hf.build_rare_dataset(documents(3), make_llm(), question_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match=r"reasoning_kwargs: add_reasoning takes no argument \['show_progress'\]"):
        rare_hf.build_rare_dataset(documents(3), make_llm(), reasoning_kwargs={"show_progress": False})
    assert teacher.http_request_count == 0


def test_zero_rows_give_zero_rows_with_every_column(teacher: LocalTeacher, make_llm) -> None:
    empty = documents(0)
    ds, summary = rare_hf.build_rare_dataset(empty, make_llm(), show_progress=False, return_summary=True)
    assert len(ds) == 0 and teacher.request_count == 0
    assert {"question", "scenario", "hard_negatives", "reasoning", "answer", "reasoning_error"} <= set(ds.column_names)
    assert [s.rows_out for s in summary.steps] == [0, 0, 0]


def test_an_empty_split_is_processed_like_any_other(teacher: LocalTeacher, make_llm) -> None:
    dd = datasets.DatasetDict({"train": rare_hf.load_sample_documents().select(range(6)), "test": documents(0)})
    out, summary = rare_hf.build_rare_dataset(dd, make_llm(), show_progress=False, return_summary=True)
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "test": 0}
    assert set(out["test"].column_names) == set(out["train"].column_names) - {"domain", "title"}
    assert teacher.request_count == 12 and summary.steps[0].ok == 6


@pytest.mark.parametrize(
    "value, hint",
    [
        (pd.DataFrame({"text": ["a"]}), r"got DataFrame; wrap it with datasets.Dataset.from_pandas\(df\)"),
        ([{"text": "a"}], r"got list; wrap it with datasets.Dataset.from_list\(rows\)"),
        ({"text": ["a"]}, r"got dict; wrap it with datasets.Dataset.from_dict\(columns\)"),
        (documents(2).to_iterable_dataset(), r"ds is an IterableDataset.*Dataset.from_generator"),
    ],
)
def test_wrong_input_types_say_what_to_pass(teacher: LocalTeacher, make_llm, value, hint: str) -> None:
    llm = make_llm()
    for call in (
        lambda: rare_hf.add_questions(value, llm),
        lambda: rare_hf.add_hard_negatives(value),
        lambda: rare_hf.build_rare_dataset(value, llm),
    ):
        with pytest.raises(TypeError, match=hint):
            call()
    assert teacher.http_request_count == 0


@pytest.mark.parametrize(
    ("function", "options"),
    [
        ("add_questions", "rare_hf.steps.questions:QuestionOptions"),
        ("add_reasoning", "rare_hf.steps.reasoning:ReasoningOptions"),
        ("verify_negatives", "rare_hf.steps.verify:VerifyOptions"),
        ("add_written_negatives", "rare_hf.steps.written:WrittenOptions"),
    ],
)
def test_a_step_s_options_are_its_function_s_arguments(function: str, options: str) -> None:
    """Each LLM step's options dataclass and its public signature name the same options with the same
    defaults and types, so neither can drift from the other."""
    import dataclasses
    import importlib
    import inspect

    module, name = options.split(":")
    fields = {
        f.name: (f.default, str(f.type)) for f in dataclasses.fields(getattr(importlib.import_module(module), name))
    }
    common = {"ds", "llm", "overwrite", "batch_size", "show_progress", "return_summary"}
    parameters = inspect.signature(getattr(rare_hf, function)).parameters
    arguments = {n: (p.default, str(p.annotation)) for n, p in parameters.items() if n not in common}
    assert arguments == fields

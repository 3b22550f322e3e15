"""Structured outputs against the local server in each way real servers answer response_format: honoured
(constrained to the schema), rejected with HTTP 400, or ignored."""

from __future__ import annotations

import json

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, demo_responder


def documents(n: int) -> datasets.Dataset:
    texts = rare_hf.load_sample_documents()["text"]
    return datasets.Dataset.from_dict({"text": [f"Case {i}. {texts[i % len(texts)]}" for i in range(n)]})


def llm_for(teacher: LocalTeacher, tmp_path) -> rare_hf.LLM:
    return rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache")


def test_a_schema_honouring_server_gets_the_schema_and_replies_in_shape(tmp_path) -> None:
    with LocalTeacher(structured_outputs="honour") as teacher:
        out, summary = rare_hf.add_questions(
            documents(12), llm_for(teacher, tmp_path), show_progress=False, return_summary=True
        )
        assert out["question_error"] == [None] * 12 and teacher.request_count == 12
        for request in teacher.requests:
            schema = request["response_format"]["json_schema"]
            assert request["response_format"]["type"] == "json_schema" and schema["name"] == "hard_queries"
            assert list(schema["schema"]["properties"]) == ["reasoning", "hard_queries"]  # reasoning first
        fenced = [demo_responder(r).split("```json")[1].split("```")[0] for r in teacher.requests]
        assert sorted(json.loads(f)["hard_queries"][0]["question"] for f in fenced) == sorted(out["question"])
        assert summary.stats["structured_output"] == "json_schema" and summary.params["structured"] == "auto"


def test_a_server_that_rejects_the_parameter_is_parsed_as_free_text_and_said_so(tmp_path) -> None:
    with LocalTeacher(structured_outputs="reject") as teacher:
        out, summary = rare_hf.add_questions(
            documents(40), llm_for(teacher, tmp_path), show_progress=False, return_summary=True
        )
        assert out["question_error"] == [None] * 40  # the run went on
        with_format = sum(1 for r in teacher.requests if "response_format" in r)
        without = [r for r in teacher.requests if "response_format" not in r]
        # Only the requests already in flight when the first refusal came back (the limiter starts at 16)
        # carried the schema; the rows queued behind them left without it.
        assert len(without) == 40 and 1 <= with_format <= 16
        assert teacher.requests[-1].get("response_format") is None
        assert summary.stats["structured_output"].startswith("off: the server rejected response_format (")
        assert "Unsupported parameter" in summary.stats["structured_output"]


def test_structured_json_schema_on_a_refusing_server_stops_with_the_fix(tmp_path) -> None:
    with LocalTeacher(structured_outputs="reject") as teacher:
        with pytest.raises(rare_hf.LLMFatalError, match="rejected response_format .*structured='auto' or 'off'"):
            rare_hf.add_questions(
                documents(40), llm_for(teacher, tmp_path), structured="json_schema", show_progress=False
            )
        assert teacher.request_count <= 16  # the requests in flight when the refusal came back; none sent twice


def test_rows_queued_behind_the_limiter_ask_in_the_format_the_server_takes(tmp_path) -> None:
    with LocalTeacher(structured_outputs="reject", latency=0.01) as teacher:
        llm = rare_hf.LLM("t", base_url=teacher.url, api_key="EMPTY", cache_dir=False, max_concurrency=8)
        out = rare_hf.add_questions(documents(300), llm, show_progress=False)
    assert out["question_error"] == [None] * 300
    # Before: 600 requests, every row's first one carrying the schema the server had already refused. Now the
    # schema goes only with the requests in flight when the first refusal came back (8 at most).
    assert 300 < teacher.request_count <= 308
    assert sum("response_format" in r for r in teacher.requests) <= 8


def test_structured_off_sends_no_schema_and_a_long_prompt_never_turns_it_off(tmp_path) -> None:
    with LocalTeacher(structured_outputs="reject", max_context_tokens=400) as teacher:
        short, long = "Warfarin dosing follows the INR closely. " * 3, "Warfarin dosing follows the INR. " * 200
        docs = datasets.Dataset.from_dict({"text": [long, short]})
        out, summary = rare_hf.add_questions(docs, llm_for(teacher, tmp_path), show_progress=False, return_summary=True)
        assert out["question_error"][0].startswith("request: prompt too long")  # the row's own problem
        teacher.reset()
        rare_hf.add_questions(documents(3), llm_for(teacher, tmp_path), structured="off", show_progress=False)
        assert all("response_format" not in r for r in teacher.requests)


def test_the_card_says_how_the_questions_were_constrained(tmp_path) -> None:
    from huggingface_hub import DatasetCard

    from rare_hf.hub import build_card

    with LocalTeacher(structured_outputs="reject") as teacher:
        out, summary = rare_hf.build_rare_dataset(
            documents(8), llm_for(teacher, tmp_path), steps=["questions"], show_progress=False, return_summary=True
        )
    card = build_card(DatasetCard(""), out, num_rows=len(out), repo_id="me/rare", summary=summary).content
    assert "- Structured outputs (questions): off: the server rejected response_format (HTTP 400: Unsupported" in card


def test_a_dataset_dict_s_summary_merges_each_field_by_its_meaning(tmp_path) -> None:
    with LocalTeacher(structured_outputs="honour") as teacher:
        splits = datasets.DatasetDict({"train": documents(6), "test": documents(4)})
        out, summary = rare_hf.add_questions(
            splits, llm_for(teacher, tmp_path), show_progress=False, return_summary=True
        )
    assert {name: len(split) for name, split in out.items()} == {"train": 6, "test": 4}
    # Before: "json_schemajson_schema" (the two splits' strings added), and zero counters dropped.
    assert summary.stats["structured_output"] == "json_schema"
    usage = summary.usage  # the test split's 4 documents are the train split's first 4: cached
    assert (usage["failed"], usage["retries"], usage["requests"], usage["cached"]) == (0, 0, 6, 4)
    assert (summary.rows_in, summary.ok) == (10, 10)

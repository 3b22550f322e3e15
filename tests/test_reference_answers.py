"""Reference answers: the teacher writes a short answer with each question, and the distilled reasoning is
checked against it (resampled when wrong) as against gold — over real HTTP."""

from __future__ import annotations

import json
import re

import datasets
import pytest

import rare_hf
from rare_hf.answers import is_short_answer
from rare_hf.testing import LocalTeacher, Reply, demo_responder


def teacher_reply(request: dict) -> str:
    """Questions with a reference answer ("42" for even documents, a sentence for odd ones); reasoning that
    answers 41 on the first try and 42 when resampled (a seed is sent)."""
    prompt = "\n".join(m["content"] for m in request["messages"])
    if "<answer>" in prompt:
        return f"<think>Working it out.</think><answer>{42 if 'seed' in request else 41}</answer>"
    if '"hard_queries"' in prompt:
        number = int(re.search(r"doc(\d+)", prompt).group(1))
        answer = "42" if number % 2 == 0 else "Because the pressure rises faster than the valve can vent it."
        item = {
            "scenario": f"A plant engineer reviews relief capacity on unit {number} before a restart.",
            "question": f"What relief capacity should unit {number} keep when the feed doubles?",
            "answer": answer,
        }
        return json.dumps({"reasoning": "r", "hard_queries": [item]})
    return demo_responder(request)


@pytest.fixture
def server():
    with LocalTeacher(responder=teacher_reply) as teacher:
        yield teacher


def docs(n: int = 8) -> datasets.Dataset:
    """The bundled sample documents, each tagged with its number for the teacher above."""
    texts = rare_hf.load_sample_documents()["text"][:n]
    return datasets.Dataset.from_dict({"text": [f"doc{i} {t}" for i, t in enumerate(texts)]})


def test_short_answers_are_matched_free_text_is_not() -> None:
    assert is_short_answer("42") and is_short_answer("(B) aspirin") and is_short_answer("yes")
    assert is_short_answer("left bundle branch block")
    assert not is_short_answer("Because the pressure rises faster than the valve can vent it.")
    assert not is_short_answer("")


def test_questions_carry_a_reference_answer_and_a_reply_without_one_is_retried(server, tmp_path) -> None:
    llm = rare_hf.LLM("t", base_url=server.url, api_key="EMPTY", cache_dir=tmp_path / "c")
    item = {"scenario": "A plant engineer reviews relief capacity.", "question": "What capacity should it keep?"}
    server.fail_next(Reply(content=json.dumps({"reasoning": "r", "hard_queries": [item]})))  # no "answer"
    out, summary = rare_hf.add_questions(docs(2), llm, reference_answer=True, return_summary=True)
    assert out["reference_answer"] == ["42", "Because the pressure rises faster than the valve can vent it."]
    assert out["question_attempts"] == [2, 1] or out["question_attempts"] == [1, 2]
    assert all(v.endswith("+answer-v1") for v in out["question_prompt_version"])
    first = server.requests[0]
    assert "reference answer" in first["messages"][-1]["content"]
    assert (
        "answer" in first["response_format"]["json_schema"]["schema"]["properties"]["hard_queries"]["items"]["required"]
    )


def test_the_pipeline_resamples_reasoning_against_short_references(server, tmp_path) -> None:
    llm = rare_hf.LLM("t", base_url=server.url, api_key="EMPTY", cache_dir=tmp_path / "c")
    out, summary = rare_hf.build_rare_dataset(
        docs(), llm, num_neg=2, question_kwargs={"reference_answer": True}, show_progress=False, return_summary=True
    )
    short = [r for r in out if r["reference_answer"] == "42"]
    free = [r for r in out if r["reference_answer"] != "42"]
    assert len(short) >= 2 and len(free) >= 2 and len(out) == 8 - summary.step("hard_negatives").failed >= 6
    assert all(r["reasoning_correct"] is True and r["reasoning_attempts"] == 2 and r["answer"] == "42" for r in short)
    assert all(len(r["reasoning_rejected"]) == 1 and r["reasoning_rejected"][0]["answer"] == "41" for r in short)
    assert all(r["reasoning_correct"] is None and r["reasoning_attempts"] == 1 for r in free)  # left to the judge
    stats = summary.step("reasoning").stats
    assert stats == {"with_gold": len(short), "first_try_correct": 0, "final_correct": len(short)}
    assert summary.step("reasoning").usage["requests"] == 2 * len(short) + len(free)
    assert summary.params["question_kwargs"] == {"reference_answer": True}

"""The LLM judge over real HTTP: structured verdicts, a judge that rejects a known subset, unusable replies
retried and never turned into scores, answer agreement only with a reference, through the pipeline."""

from __future__ import annotations

import json
import re

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, demo_responder


def grading_judge(request: dict) -> str:
    """Scores needs_reasoning 2 for questions that ask for a definition, 5 otherwise; answer_agrees 1 when the
    distilled answer is not the reference; other prompts as the demo teacher."""
    prompt = request["messages"][-1]["content"]
    if "# Reference answer:" not in prompt:
        return demo_responder(request)
    question = prompt.split("# Question\n", 1)[1].split("\n", 1)[0]
    answer = re.search(r"# Distilled answer: (.*)", prompt).group(1)
    reference = re.search(r"# Reference answer: (.*)", prompt).group(1)
    lookup = question.startswith("Define")
    verdict = {
        "standalone": {"score": 5, "reason": "Clear."},
        "needs_reasoning": {"score": 2 if lookup else 5, "reason": "A definition." if lookup else "Needs work."},
        "answerable": {"score": 4, "reason": "In the document."},
        "answer_agrees": None if reference == "(none)" else {"score": 5 if answer == reference else 1, "reason": "."},
    }
    return json.dumps(verdict)


@pytest.fixture
def judge_server():
    with LocalTeacher(responder=grading_judge) as server:
        yield server


def rows(n: int = 12) -> datasets.Dataset:
    questions = [("Define term %d?" if i % 4 == 0 else "How would plan %d change under load?") % i for i in range(n)]
    texts = [f"Document {i} explains term {i} and how plan {i} behaves under load." for i in range(n)]
    return datasets.Dataset.from_dict({"question": questions, "text": texts})


def test_the_judge_drops_the_subset_it_rejects(judge_server, tmp_path) -> None:
    llm = rare_hf.LLM("judge", base_url=judge_server.url, api_key="EMPTY", cache_dir=tmp_path / "c")
    out, summary = rare_hf.judge(rows(), llm, return_summary=True)
    reasons = out["drop_reason"]
    assert [i for i, r in enumerate(reasons) if r] == [0, 4, 8]
    assert reasons[0] == "judge: needs_reasoning 2 < 3 (A definition.)"
    assert out["judge_scores"][1] == {"standalone": 5, "needs_reasoning": 5, "answerable": 4, "answer_agrees": None}
    assert out["judge_passed"] == [i % 4 != 0 for i in range(12)]
    assert summary.stats["below_min_score"] == 3 and summary.stats["score_histogram"]["needs_reasoning"]["2"] == 3
    assert all(r["response_format"]["json_schema"]["name"] == "judgement" for r in judge_server.requests)
    # flagged only; a stricter bar takes the rest too
    flagged = rare_hf.judge(rows(), llm, action="flag")
    assert flagged["drop_reason"] == [None] * 12 and flagged["judge_passed"].count(False) == 3
    strict = rare_hf.judge(rows(), llm, min_score=5)
    assert all(r and "answerable 4 < 5" in r for r in strict["drop_reason"])


def test_unusable_replies_are_retried_and_never_become_scores(judge_server, tmp_path) -> None:
    llm = rare_hf.LLM("judge", base_url=judge_server.url, api_key="EMPTY", cache_dir=tmp_path / "c", max_retries=1)
    judge_server.fail_next(Reply(content='{"standalone": {"score": 9}}'), Reply(content="I think it is fine."))
    judge_server.fail_next(Reply.error(500), times=4)
    out, summary = rare_hf.judge(rows(1), llm, return_summary=True)
    assert out["judge_scores"] == [None] and out["judge_passed"] == [None] and out["drop_reason"] == [None]
    assert out["judge_error"][0].startswith(("parse: no JSON object scoring", "request: "))
    assert summary.failed == 1 and summary.ok == 0


def test_answer_agreement_in_the_pipeline_with_reference_answers(judge_server, tmp_path) -> None:
    llm = rare_hf.LLM("judge", base_url=judge_server.url, api_key="EMPTY", cache_dir=tmp_path / "c")
    ds = rows(6).add_column("gold", ["nothing the demo answers"] * 6).add_column("scenario", ["At work."] * 6)
    ds = ds.add_column("hard_negatives", [[t for t in ds["text"] if t != own][:2] for own in ds["text"]])
    out, summary = rare_hf.build_rare_dataset(
        ds, llm, steps=["reasoning", "judge"], num_neg=2, show_progress=False,
        return_summary=True, judge_kwargs={"input_reference_key": "gold"},
    )  # fmt: skip
    prompts = [r["messages"][-1]["content"] for r in judge_server.requests]
    judged = [p for p in prompts if "# Reference answer: nothing the demo answers" in p]
    assert len(judged) == summary.step("judge").ok >= 4  # the reference is shown beside the distilled answer
    assert all(s["answer_agrees"] == 1 for s in out["judge_scores"] if s is not None)
    assert summary.filtered.get("judge") == summary.step("judge").ok  # every judged row disagrees: dropped
    assert len(out) == 0 and summary.rows_out == 0 and summary.dropped_failed == 0
    from rare_hf.io.card_quality import quality

    section = quality(summary)
    assert "- LLM judge (`judge`, prompt rare_hf-judge-v1): 6 rows judged, 6 scored below 3" in section
    assert "| answer_agrees | 6 | 0 | 0 | 0 | 0 |" in section

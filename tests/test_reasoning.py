"""add_reasoning against the local teacher over real HTTP."""

from __future__ import annotations

import re

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply


def dataset(n: int = 6, **extra) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "text": [f"Positive document {i} about beta blockers and heart rate control." for i in range(n)],
            "question": [f"Question {i}: which drug class should be started first for rate control?" for i in range(n)],
            "scenario": [f"Scenario {i}: a patient with fast atrial fibrillation." for i in range(n)],
            "hard_negatives": [[f"Negative {i}.{j} about calcium channels." for j in range(3)] for i in range(n)],
            **extra,
        }
    )


def documents_in(request: dict) -> list[str]:
    return re.findall(r'<document index="\d+">\n(.*?)\n</document>', request["messages"][1]["content"], re.S)


def question_of(request: dict) -> str:
    return request["messages"][1]["content"].split("# Question\n", 1)[1].split("\n", 1)[0]


def test_order_is_seeded_recorded_and_rebuilds_the_prompt(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: "<think>Compare the documents.</think>\n<answer>Beta blockers.</answer>"
    ds = dataset(12)
    out = rare_hf.add_reasoning(ds, make_llm(), show_progress=False)
    by_question = {question_of(r): r for r in teacher.requests}
    assert len(by_question) == 12 == teacher.request_count
    for row in out:
        sent = by_question[row["question"]]
        assert rare_hf.reasoning_messages_for_row(row) == sent["messages"]  # rebuilt from the row alone
        shown = documents_in(sent)
        assert shown[row["reasoning_positive_index"]] == row["text"]
        assert sorted(row["reasoning_doc_order"]) == [0, 1, 2, 3]
        assert shown == [([row["text"]] + row["hard_negatives"])[i] for i in row["reasoning_doc_order"]]
    same = rare_hf.add_reasoning(ds, make_llm(), show_progress=False)
    other = rare_hf.add_reasoning(ds, make_llm(), seed=1, show_progress=False)
    assert same["reasoning_doc_order"] == out["reasoning_doc_order"]
    assert other["reasoning_doc_order"] != out["reasoning_doc_order"]
    assert len({tuple(o) for o in out["reasoning_doc_order"]}) > 1  # rows are shuffled differently
    assert len({p for p in out["reasoning_positive_index"]}) > 1


def test_think_answer_split_and_raw_kept(teacher: LocalTeacher, make_llm) -> None:
    reply = (
        "<think>Step 1: the essential problem.\nStep 2: document 2 is irrelevant.</think>\n"
        "<answer>Start a beta blocker.</answer>"
    )
    teacher.responder = lambda r: reply
    out, summary = rare_hf.add_reasoning(dataset(2), make_llm(), show_progress=False, return_summary=True)
    assert out["reasoning"] == ["Step 1: the essential problem.\nStep 2: document 2 is irrelevant."] * 2
    assert out["answer"] == ["Start a beta blocker."] * 2
    assert out["reasoning_raw"] == [reply] * 2
    assert out["reasoning_correct"] == [None, None] and out["reasoning_error"] == [None, None]
    assert (summary.ok, summary.failed, summary.skipped) == (2, 0, 0)
    assert summary.usage["prompt_tokens"] == teacher.prompt_tokens


def test_gold_answers_resample_wrong_ones(teacher: LocalTeacher, make_llm) -> None:
    # Row i answers correctly from attempt right_from[i] on (attempt = the request's seed, 0 for the first).
    right_from = [0, 1, 2, 9, 0, 3]
    gold = ["B", "C", "A", "D", "(B) beta blockers", "C"]

    def responder(request: dict) -> str:
        i = int(question_of(request).split()[1].rstrip(":"))
        attempt = request.get("seed", 0)
        letter = gold[i][1] if gold[i].startswith("(") else gold[i]
        answer = letter if attempt >= right_from[i] else "A" if letter != "A" else "B"
        return f"<think>Reasoning for {i} try {attempt}.</think><answer>{answer}) because...</answer>"

    teacher.responder = responder
    ds = dataset(6, gold=gold)
    out, summary = rare_hf.add_reasoning(
        ds, make_llm(), answer_key="gold", max_attempts=4, show_progress=False, return_summary=True
    )
    # Requests: 1 + 2 + 3 + 4 (never right) + 1 + 4.
    assert teacher.request_count == 15
    assert out["reasoning_attempts"] == [1, 2, 3, 4, 1, 4]
    assert out["reasoning_correct"] == [True, True, True, False, True, True]
    assert out["reasoning"][3] is None and out["answer"][3] is None
    assert out["reasoning_error"][3].startswith("wrong:")
    assert out["reasoning"][2] == "Reasoning for 2 try 2."
    assert summary.stats == {"with_gold": 6, "first_try_correct": 2, "final_correct": 5}
    assert (summary.ok, summary.failed) == (5, 1)
    resamples = [r for r in teacher.requests if "seed" in r]
    assert all(r["temperature"] == 0.95 for r in resamples) and len(resamples) == 9
    with pytest.raises(ValueError, match="output_answer_key='teacher_answer'"):
        rare_hf.add_reasoning(ds.rename_column("gold", "answer"), make_llm(), answer_key="answer")


def test_truncated_and_incomplete_replies_are_retried_then_marked(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: Reply.truncated("<think>It depends on")
    out, summary = rare_hf.add_reasoning(
        dataset(1), make_llm(), max_attempts=3, show_progress=False, return_summary=True
    )
    # Each attempt is asked once more with twice the budget (the cut is not a loop): 3 attempts, 6 requests.
    assert [r["max_tokens"] for r in teacher.requests] == [4096, 8192] * 3
    assert out[0]["reasoning"] is None and out[0]["answer"] is None
    assert out[0]["reasoning_error"] == "truncated: the reply was cut off at max_tokens=8192; raise max_tokens"
    assert summary.failed == 1 and summary.failure_reasons == {"truncated": 1}
    teacher.reset()
    teacher.fail_next(Reply(content="<think>No answer given.</think>"))
    teacher.responder = lambda r: "<think>Now complete.</think><answer>Done.</answer>"
    out = rare_hf.add_reasoning(dataset(1), make_llm(cache_dir=False), show_progress=False)
    assert teacher.request_count == 2 and out[0]["answer"] == "Done." and out[0]["reasoning_attempts"] == 2


def test_upstream_failed_rows_send_nothing(teacher: LocalTeacher, make_llm) -> None:
    ds = datasets.Dataset.from_dict(
        {
            "text": ["doc a", "doc b", "doc c", "doc d"],
            "question": ["Why does a matter here?", None, "Why does c matter here?", "Why does d matter here?"],
            "scenario": ["s", None, None, "s"],
            "hard_negatives": [["n1"], ["n2"], None, []],
        }
    )
    teacher.responder = lambda r: "<think>ok</think><answer>ok</answer>"
    out, summary = rare_hf.add_reasoning(ds, make_llm(), show_progress=False, return_summary=True)
    assert teacher.request_count == 2
    assert {question_of(r) for r in teacher.requests} == {"Why does a matter here?", "Why does d matter here?"}
    assert out["reasoning_error"][1] == "skipped: question is missing (failed upstream)"
    assert out["reasoning_error"][2] == "skipped: hard negatives are missing (failed upstream)"
    assert out["reasoning"] == ["ok", None, None, "ok"]
    assert (summary.ok, summary.failed, summary.skipped) == (2, 0, 2)


def test_bad_columns_are_refused_before_any_request(teacher: LocalTeacher, make_llm) -> None:
    llm = make_llm()
    bad = dataset(2).remove_columns("hard_negatives").add_column("hard_negatives", ["a", "b"])
    with pytest.raises(ValueError, match=r"'hard_negatives' \(from input_hardneg_key=\) must be a list of strings"):
        rare_hf.add_reasoning(bad, llm)
    with pytest.raises(ValueError, match=r"Column 'scenario' \(from input_scenario_key=\) not found"):
        rare_hf.add_reasoning(dataset(2).remove_columns("scenario"), llm)
    with pytest.raises(ValueError, match=r"Column 'gold' \(from answer_key=\) not found"):
        rare_hf.add_reasoning(dataset(2), llm, answer_key="gold")
    assert teacher.http_request_count == 0


def test_gold_answers_are_matched_as_teachers_write_them(teacher: LocalTeacher, make_llm) -> None:
    replies = {
        0: "<think>Rate control first.</think>\n<answer>I think the answer is B</answer>",
        1: "<think>Doc 3 quotes a form: <answer>A</answer>. Doc 1 favours B.</think>\n"
        "<answer>(B) beta blockers</answer>",
        2: "<think>A beta blocker is usual, but here calcium.</think>\n<answer>A beta blocker</answer>",
    }
    teacher.responder = lambda r: replies[int(question_of(r).split()[1].rstrip(":"))]
    ds = dataset(3, gold=["B", "B", "C"])
    out, summary = rare_hf.add_reasoning(
        ds,
        make_llm(),
        answer_key="gold",
        output_answer_key="teacher_answer",
        max_attempts=2,
        show_progress=False,
        return_summary=True,
    )
    assert out["reasoning_correct"] == [True, True, False]
    assert out["teacher_answer"] == ["I think the answer is B", "(B) beta blockers", None]
    assert out["reasoning_attempts"] == [1, 1, 2]  # only the wrong one was resampled
    assert summary.stats["first_try_correct"] == 2 and teacher.request_count == 4

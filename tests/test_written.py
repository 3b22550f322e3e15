"""LLM-written negatives over real HTTP: they never equal, copy or contain the positive or its answer, a bad
one is asked for again, and the triples export keeps them apart from the mined ones."""

from __future__ import annotations

import json

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher

POSITIVE = (
    "Warfarin dosing is guided by the INR. Amiodarone inhibits CYP2C9 and raises the INR within one to two "
    "weeks, so the weekly warfarin dose is usually cut by a third when amiodarone is started, and the INR is "
    "checked twice a week until it is stable again. Vitamin K intake and CYP2C9 variants shift the dose too."
)
GOOD = (
    "Heparin-induced thrombocytopenia is an immune reaction to heparin that lowers the platelet count five to "
    "ten days after exposure. Clinicians estimate its probability with the 4T score, stop every heparin, and "
    "start a non-heparin anticoagulant such as argatroban. Platelet counts are followed daily, and warfarin is "
    "not started until they recover, because early warfarin can cause venous limb gangrene in these patients."
)


def rows(answer: str = "cut the dose by a third") -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "text": [POSITIVE],
            "question": ["How should warfarin change when amiodarone is started in a stable patient?"],
            "scenario": ["A patient on stable warfarin starts amiodarone for atrial fibrillation."],
            "answer": [answer],
        }
    )


def replies(*documents: list[str]):
    queue = iter(documents)
    return lambda request: "Here they are.\n" + json.dumps({"documents": next(queue)})


def test_written_negatives_that_copy_or_answer_are_asked_again(teacher: LocalTeacher, make_llm) -> None:
    copied = "An unrelated opening line. " + POSITIVE
    answering = GOOD + " When amiodarone starts, cut the dose by a third."
    teacher.responder = replies([copied], [answering], [GOOD])
    out, summary = rare_hf.add_written_negatives(
        rows(), make_llm(), answer_key="answer", show_progress=False, return_summary=True
    )
    assert out["written_negatives"] == [[GOOD]] and out["written_negatives_attempts"] == [3]
    assert teacher.request_count == 3 and summary.ok == 1
    prompt = teacher.requests[0]["messages"][1]["content"]
    assert POSITIVE in prompt and "How should warfarin change" in prompt and "1 new document(s)" in prompt


def test_a_row_whose_documents_never_pass_fails_with_the_reason(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda request: json.dumps({"documents": [POSITIVE]})
    out = rare_hf.add_written_negatives(rows(), make_llm(), show_progress=False)
    assert out["written_negatives"] == [None]
    assert out["written_negatives_error"] == ["invalid: a written document copies a passage of the positive"]


def test_written_negatives_are_kept_apart_in_the_triples(teacher: LocalTeacher, make_llm) -> None:
    ds = rows().add_column("hard_negatives", [["A mined negative about heparin dosing."]])
    out = rare_hf.add_written_negatives(ds, make_llm(), num_neg=1, show_progress=False)  # the demo teacher
    written = out["written_negatives"][0]
    assert len(written) == 1 and POSITIVE not in written[0] and written[0] != POSITIVE
    triple = rare_hf.to_retrieval_triples(out)[0]
    assert [p["text"] for p in triple["negative_passages"]] == ["A mined negative about heparin dosing."]
    assert [p["text"] for p in triple["written_negative_passages"]] == written
    assert triple["written_negative_passages"][0]["docid"].startswith("written-")


def test_bad_arguments_fail_before_any_request(teacher: LocalTeacher, make_llm) -> None:
    with pytest.raises(ValueError, match="answer_key"):
        rare_hf.add_written_negatives(rows(), make_llm(), answer_key="gold", show_progress=False)
    with pytest.raises(ValueError, match="num_neg must be at least 1"):
        rare_hf.add_written_negatives(rows(), make_llm(), num_neg=0, show_progress=False)
    assert teacher.http_request_count == 0

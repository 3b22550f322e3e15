"""LLM-verified negatives over real HTTP: planted false negatives are dropped and replaced from deeper
candidates; verdicts and counts are recorded per row and in the summary."""

from __future__ import annotations

import json
import re

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply

PLANTED = "(this one states the answer)"


def judge(request: dict) -> str:
    """A teacher that flags exactly the candidates carrying the planted marker."""
    prompt = request["messages"][-1]["content"]
    docs = re.findall(r'<document index="(\d+)">\n(.*?)\n</document>', prompt, re.DOTALL)
    return "Checked each.\n" + json.dumps({"answers": [int(i) for i, text in docs if PLANTED in text]})


def rows() -> datasets.Dataset:
    negatives = [
        ["neg a1", f"positive twin 1 {PLANTED}", "neg a2", "neg a3", "neg a4", "neg a5"],
        ["neg b1", "neg b2", "neg b3", "neg b4", "neg b5", "neg b6"],
        [f"twin 3a {PLANTED}", f"twin 3b {PLANTED}", "neg c1", "neg c2", "neg c3", "neg c4"],
    ]
    return datasets.Dataset.from_dict(
        {"question": [f"Which dose is safest for patient {i}?" for i in range(3)], "hard_negatives": negatives}
    )


def test_planted_false_negatives_are_dropped_and_replaced_from_deeper_candidates(
    teacher: LocalTeacher, make_llm
) -> None:
    teacher.responder = judge
    out, summary = rare_hf.verify_negatives(rows(), make_llm(), num_neg=3, show_progress=False, return_summary=True)
    assert out["hard_negatives"] == [
        ["neg a1", "neg a2", "neg a3"],
        ["neg b1", "neg b2", "neg b3"],
        ["neg c1", "neg c2", "neg c3"],
    ]
    assert out["hard_negatives_false_negatives"] == [
        [f"positive twin 1 {PLANTED}"],
        [],
        [f"twin 3a {PLANTED}", f"twin 3b {PLANTED}"],
    ]
    assert out["hard_negatives_verify_error"] == [None] * 3 and teacher.request_count == 3  # one request per row
    assert summary.stats["false_negatives"] == 3 and summary.stats["rows_with_false_negatives"] == 2
    assert set(out["hard_negatives_verify_prompt_version"]) == {"rare_hf-verify-v1"}
    shown = teacher.requests[0]["messages"][-1]["content"]
    assert "Which dose is safest for patient 0?" in shown and '<document index="6">\nneg a5' in shown


def test_a_row_without_a_usable_verdict_keeps_its_negatives_unverified_and_counted(
    teacher: LocalTeacher, make_llm
) -> None:
    teacher.responder = lambda r: "I think document two, maybe."
    out, summary = rare_hf.verify_negatives(
        rows().select([1]), make_llm(), num_neg=3, show_progress=False, return_summary=True
    )
    assert out["hard_negatives"] == [["neg b1", "neg b2", "neg b3"]] and teacher.request_count == 2
    assert out["hard_negatives_verify_error"][0].startswith("parse: no JSON object")
    assert summary.failed == 1 and summary.failure_reasons == {"parse": 1}


def test_an_out_of_range_verdict_is_not_trusted(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply(content='{"answers": [9]}'))
    teacher.responder = lambda r: '{"answers": [1]}'
    out = rare_hf.verify_negatives(rows().select([1]), make_llm(), show_progress=False)
    assert out["hard_negatives"] == [["neg b2", "neg b3", "neg b4", "neg b5", "neg b6"]]  # num_neg=None keeps all
    assert teacher.request_count == 2 and teacher.requests[1]["temperature"] == 0.7


def test_bad_columns_fail_before_any_request(teacher: LocalTeacher, make_llm) -> None:
    with pytest.raises(ValueError, match="input_hardneg_key"):
        rare_hf.verify_negatives(rows().remove_columns("hard_negatives"), make_llm(), show_progress=False)
    assert teacher.http_request_count == 0


def test_ids_and_scores_follow_their_negatives_and_false_negatives_can_become_positives(
    teacher: LocalTeacher, make_llm
) -> None:
    teacher.responder = judge
    ds = rows()
    ids = [[f"r{r}-{c}" for c in range(6)] for r in range(3)]
    ds = ds.add_column("hard_negatives_ids", ids).add_column("hard_negatives_scores", [[6.0, 5, 4, 3, 2, 1]] * 3)
    ds = ds.add_column("hard_negatives_positives", [["mined twin"], [], []])
    ds = ds.add_column("hard_negatives_positives_ids", [["m0"], [], []])
    out = rare_hf.verify_negatives(ds, make_llm(), num_neg=3, false_negatives="positive", show_progress=False)
    # Before, the ids and scores kept all six candidates while the texts lost the false negatives: exports
    # paired "neg a2" with the id of the planted twin.
    assert out["hard_negatives_ids"] == [["r0-0", "r0-2", "r0-3"], ["r1-0", "r1-1", "r1-2"], ["r2-2", "r2-3", "r2-4"]]
    assert out["hard_negatives_scores"] == [[6.0, 4, 3], [6.0, 5, 4], [4.0, 3, 2]]
    assert out["hard_negatives_false_negatives_ids"] == [["r0-1"], [], ["r2-0", "r2-1"]]
    assert out["hard_negatives_positives_ids"] == [["m0", "r0-1"], [], ["r2-0", "r2-1"]]
    assert out["hard_negatives_positives"][0] == ["mined twin", f"positive twin 1 {PLANTED}"]
    triples = rare_hf.to_retrieval_triples(out.add_column("text", ["p0", "p1", "p2"]))
    assert [p["docid"] for p in triples[2]["positive_passages"]][1:] == ["r2-0", "r2-1"]
    assert [(p["docid"], p["text"]) for p in triples[0]["negative_passages"]][1] == ("r0-2", "neg a2")

"""Reply parsing on the shapes real teachers produce."""

from __future__ import annotations

import json

import pytest

from rare_hf.parsing import (
    ParseError,
    answers_match,
    iter_json_objects,
    parse_questions,
    split_reasoning,
    validate_question,
)

GOOD = {"hard_queries": [{"scenario": "A team must pick a storage engine.", "question": "Which engine and why?"}]}


@pytest.mark.parametrize(
    "reply",
    [
        json.dumps(GOOD),
        "Thinking about sets {a, b} and maps {k: v}.\n```json\n" + json.dumps(GOOD, indent=2) + "\n```",
        "Code: `if (x) { y(); }` and LaTeX $\\{x\\}$ then " + json.dumps(GOOD) + " -- done {end}",
        '{"hard_query": {"scenario": "A team must pick a storage engine.", "question": "Which engine and why?"}}',
        "draft: "
        + json.dumps({"hard_queries": [{"scenario": "old", "question": "old?"}]})
        + "\nfinal: "
        + json.dumps(GOOD),
    ],
)
def test_parse_questions_takes_the_last_object_with_expected_keys(reply: str) -> None:
    assert parse_questions(reply) == [
        {"question": "Which engine and why?", "scenario": "A team must pick a storage engine."}
    ]


@pytest.mark.parametrize(
    "reply, message",
    [
        ("no json at all", "no JSON object"),
        ('{"hard_queries": []}', "empty"),
        ('{"hard_queries": [{"scenario": 1, "question": "q"}]}', "string"),
        ('{"other": {"x": 1}}', "no JSON object"),
    ],
)
def test_parse_questions_errors_say_why(reply: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_questions(reply)


def test_iter_json_objects_skips_non_json_braces() -> None:
    assert list(iter_json_objects('{x} {"a": {"b": 1}} {bad "c"} {"d": 2}')) == [{"a": {"b": 1}}, {"d": 2}]


@pytest.mark.parametrize(
    "question, scenario, reason",
    [
        ("Short?", "s", "shorter than"),
        ("According to the passage, why is X true?", "A long enough scenario.", "refers to its source"),
        (
            "What should the engineer do next, given the constraints?",
            "As described in this document, a...",
            "refers to its source",
        ),
        ("Which engine and why would you choose it?", "", "scenario is empty"),
    ],
)
def test_validate_question_rejects(question: str, scenario: str, reason: str) -> None:
    assert reason in validate_question(question, scenario, "Unrelated document text.")


def test_validate_question_rejects_copies_and_accepts_good() -> None:
    doc = "The write-ahead log guarantees durability because every change is flushed before commit."
    assert "copies" in validate_question("The write-ahead log guarantees durability", "A scenario here.", doc)
    assert (
        validate_question(
            "How would you keep commits durable on a disk that lies about fsync?",
            "An engineer runs a database on cheap SSDs.",
            doc,
        )
        is None
    )


def test_split_reasoning_variants() -> None:
    assert split_reasoning("<think>a {b}</think>\n<answer>C</answer>") == ("a {b}", "C")
    assert split_reasoning("<answer>draft</answer> more <answer>final</answer>")[1] == "final"
    assert split_reasoning("Reasoning here.\nFinal answer: 42") == ("Reasoning here.", "42")
    assert split_reasoning("<think>cut off mid") == ("cut off mid", None)
    assert split_reasoning("") == (None, None)


@pytest.mark.parametrize(
    "predicted, gold, expected",
    [
        ("B", "B", True),
        ("(b)", "B", True),
        ("B) because it slows the rate", "B", True),
        ("The answer is C", "B", False),
        ("Answer: B", "B", True),
        ("C", "(B) beta blockers", False),
        ("B. Beta blockers", "(B) beta blockers", True),
        ("beta-blockers!", "Beta blockers", True),
        ("The Paris", "paris", True),
        ("Lyon", "Paris", False),
        (None, "Paris", False),
    ],
)
def test_answers_match(predicted: str | None, gold: str, expected: bool) -> None:
    assert answers_match(predicted, gold) is expected

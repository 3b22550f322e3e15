"""Reply parsing on the shapes real teachers produce."""

from __future__ import annotations

import json

import pytest

from rare_hf.answers import answers_match, split_reasoning
from rare_hf.parsing import ParseError, is_near_duplicate, iter_json_objects, parse_questions, validate_question

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
        ("Based on the document provided, which dose is safest?", "A ward with renal patients.", "its source"),
        ("What does the passage above imply for dosing?", "A ward with renal patients.", "its source"),
        ("Which option fits best here?", "In this excerpt, a nurse must choose a dose.", "its source"),
        ("Why does the author favour beta blockers in the given text?", "A ward of patients.", "its source"),
        ("Given the context provided, what should the team do?", "A ward of patients.", "its source"),
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


@pytest.mark.parametrize(
    "question, scenario, echoed",
    [
        (
            "How should the team sequence the two migrations safely?",
            "The situation and its constraints",
            "<the situation",
        ),
        ("<the question> for this ward", "A ward of patients on two anticoagulants.", "<the question>"),
        (
            "What would a capable practitioner of this domain could face here?",
            "A ward of patients on two anticoagulants.",
            "a capable practitioner of this domain",
        ),
        (
            "Which dose is safest for this patient?",
            "Each question comes with a scenario and together they must stand alone.",
            "each question comes with a scenario",
        ),
    ],
)
def test_a_field_that_echoes_the_prompt_is_rejected(question: str, scenario: str, echoed: str) -> None:
    from rare_hf.prompts import QUESTION_PROMPT, QUESTION_REPAIR_PROMPT
    from rare_hf.steps._question_format import prompt_text

    reason = validate_question(
        question, scenario, "Unrelated document text.", prompt=prompt_text(QUESTION_PROMPT, QUESTION_REPAIR_PROMPT)
    )
    assert reason is not None and "echoes the prompt" in reason and echoed in reason


def test_near_duplicates_are_told_apart_from_different_questions() -> None:
    first = "Which anticoagulant should the team stop first in a patient with renal failure?"
    assert is_near_duplicate(
        "Which anticoagulant should the team stop first in a patient with kidney failure?", [first]
    )
    assert not is_near_duplicate("How long after stopping warfarin can the surgery go ahead safely?", [first])


def test_split_reasoning_variants() -> None:
    assert split_reasoning("<think>a {b}</think>\n<answer>C</answer>") == ("a {b}", "C")
    assert split_reasoning("<answer>draft</answer> more <answer>final</answer>")[1] == "final"
    assert split_reasoning("Reasoning here.\nFinal answer: 42") == ("Reasoning here.", "42")
    assert split_reasoning("<think>cut off mid") == ("cut off mid", None)
    assert split_reasoning("") == (None, None)


# (predicted answer, gold answer, match?) in both directions: every row of the data-correctness issue and
# the forms teachers really write for multiple choice, yes/no/maybe and short free text.
ANSWER_TABLE = [
    # multiple choice, bare gold letter
    ("B", "B", True),
    ("(b)", "B", True),
    ("B.", "B", True),
    ("**C**", "C", True),
    ("[D]", "D", True),
    ("B) because it slows the rate", "B", True),
    ("C. Aspirin", "C", True),
    ("(C) aspirin", "C", True),
    ("Answer: C", "C", True),
    ("Final answer: (C)", "C", True),
    ("The answer is C", "C", True),
    ("the answer is c.", "C", True),
    ("I think the answer is B", "B", True),
    ("Therefore, the correct option is D.", "D", True),
    ("Option E", "E", True),
    ("The answer is A because it is the safest", "A", True),
    ("The best choice would be (A), given the renal function", "A", True),
    ("The answer is C", "B", False),
    ("A beta blocker is the first choice.", "A", False),
    ("The answer is a combination of both drugs (option C)", "A", False),
    ("The answer is a combination of both drugs (option C)", "C", True),
    ("I would avoid A and B.", "A", False),
    ("C", "(B) beta blockers", False),
    ("B", "(B) beta blockers", True),
    ("B. Beta blockers", "(B) beta blockers", True),
    ("beta blockers", "(B) beta blockers", True),
    ("calcium channel blockers", "(B) beta blockers", False),
    ("C. Beta blockers", "(B) beta blockers", False),
    ("", "B", False),
    (None, "B", False),
    # short free text
    ("The answer is Paris.", "Paris", True),
    ("Paris.", "paris", True),
    ("The Paris", "paris", True),
    ("beta-blockers!", "Beta blockers", True),
    ("Lyon", "Paris", False),
    ("Paris or Lyon", "Paris", False),
    ("Not Paris", "Paris", False),
    ("Answer: 42", "42", True),
    ("42 mg", "42", False),
    ("Metformin", "metformin.", True),
    ("Café", "cafe", True),
    # yes / no / maybe
    ("Yes", "yes", True),
    ("Yes, because the trial showed a benefit.", "yes", True),
    ("yes.", "Yes", True),
    ("No.", "yes", False),
    ("No, the evidence is too weak", "no", True),
    ("Maybe", "maybe", True),
    ("Maybe yes", "yes", False),
    ("Yes or no, it depends", "yes", False),
    ("The answer is no.", "no", True),
]


@pytest.mark.parametrize("predicted, gold, expected", ANSWER_TABLE)
def test_answers_match(predicted: str | None, gold: str, expected: bool) -> None:
    assert answers_match(predicted, gold) is expected


def test_the_answer_table_covers_both_directions() -> None:
    assert len(ANSWER_TABLE) >= 40
    assert sum(e for *_, e in ANSWER_TABLE) >= 15 and sum(not e for *_, e in ANSWER_TABLE) >= 15


def test_answer_tags_quoted_inside_the_thinking_are_ignored() -> None:
    reply = (
        "<think>Document 2 says: 'the trial form had <answer>X</answer> in its template'. Document 1 "
        "supports beta blockers.</think>\n<answer>draft</answer>\n<answer>Beta blockers.</answer>"
    )
    assert split_reasoning(reply)[1] == "Beta blockers."
    assert split_reasoning("<think>The form reads <answer>X</answer>.</think>\nAnswer: B")[1] == "B"
    assert split_reasoning("<think>quoted <answer>X</answer> only</think>") == ("quoted <answer>X</answer> only", None)


@pytest.mark.parametrize(
    "question, scenario",
    [
        ("In the context of chronic kidney disease, which anticoagulant dose is safest?", "An elderly patient."),
        ("Under this article of the treaty, can a state suspend the transfer?", "Two states dispute a dam."),
        ("How does the text of the constitution constrain emergency powers here?", "A sudden flood hits the capital."),
        ("Which paper mill process explains the pollution pattern downstream?", "A river turns brown each spring."),
        ("What context would make a beta blocker the wrong first choice?", "A patient with asthma and fast AF."),
    ],
)
def test_validate_question_accepts_ordinary_uses_of_those_words(question: str, scenario: str) -> None:
    assert validate_question(question, scenario, "Unrelated document text.") is None


@pytest.mark.parametrize(
    "question, refers",
    [
        ("根据上文，华法林的剂量应该如何调整？", True),
        ("文中提到的患者下一步应该怎么处理？", True),
        ("该文档描述的方案有什么风险？", True),
        ("华法林剂量应如何调整才安全？", False),
        ("这份合同中的对价条款是否有效？", False),
    ],
)
def test_chinese_questions_that_refer_to_their_source(question: str, refers: bool) -> None:
    reason = validate_question(question, "一位患者同时服用两种抗凝药。", "无关的文档内容。")
    assert (reason is not None and "refers to its source" in reason) == refers, reason

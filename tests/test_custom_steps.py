"""A user's own step, defined here and nowhere else, runs through the pipeline, the dry run and the Hub card."""

from __future__ import annotations

import json
import re

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, demo_responder

DIFFICULTY = rare_hf.Prompt(
    system="You grade exam questions.",
    user="Question: {question}\n\nSource:\n{document}\n\nRate the difficulty. Reply with JSON "
    '{{"difficulty": "easy|hard", "why": "..."}}.',
    version="difficulty-v1",
    name="difficulty",
)


def parse_difficulty(reply: str) -> dict[str, str]:
    data = json.loads(reply[reply.index("{") : reply.rindex("}") + 1])
    if data.get("difficulty") not in ("easy", "hard"):
        raise ValueError(f"difficulty must be easy or hard, got {data.get('difficulty')!r}")
    return {"difficulty": data["difficulty"], "difficulty_why": data["why"]}


def grader(request: dict) -> str:
    """The demo teacher, plus answers to the difficulty prompt: 'hard' for questions of odd length; a
    malformed first reply for every question that mentions 'trade-offs' (asked again: resampled)."""
    messages = request["messages"]
    if messages[0]["content"] != DIFFICULTY.system:
        return demo_responder(request)
    question = messages[1]["content"].split("\n\n")[0].removeprefix("Question: ")
    if "trade-offs" in question and request.get("seed") is None:
        return '{"difficulty": "medium", "why": "unsure"}'
    level = "hard" if len(question) % 2 else "easy"
    return json.dumps({"difficulty": level, "why": f"{len(question)} characters"})


def difficulty_step() -> rare_hf.PromptStep:
    return rare_hf.PromptStep(
        "difficulty",
        DIFFICULTY,
        outputs={"difficulty": "How hard the teacher finds the question.", "difficulty_why": "Its reason."},
        parse=parse_difficulty,
        completion_tokens=30,
    )


@pytest.fixture
def grading_teacher():
    with LocalTeacher(grader) as server:
        yield server


def test_a_user_step_runs_between_the_built_in_steps(grading_teacher, tmp_path) -> None:
    docs = rare_hf.load_sample_documents()
    llm = rare_hf.LLM("m", base_url=grading_teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache")
    step = difficulty_step()
    ds, summary = rare_hf.build_rare_dataset(
        docs, llm, steps=["questions", step, "reasoning", "hard_negatives"], return_summary=True, show_progress=False
    )
    # Built-in steps in their own order; the user step right after the step given before it.
    assert [s.step for s in summary.steps] == ["questions", "difficulty", "hard_negatives", "reasoning"]
    assert len(ds) == 20
    expected = ["hard" if len(q) % 2 else "easy" for q in ds["question"]]
    assert ds["difficulty"] == expected
    assert ds["difficulty_why"] == [f"{len(q)} characters" for q in ds["question"]]
    resampled = ["trade-offs" in q for q in ds["question"]]
    assert 0 < sum(resampled) < 20
    assert ds["difficulty_attempts"] == [2 if r else 1 for r in resampled]
    assert set(ds["difficulty_prompt_version"]) == {"difficulty-v1"}
    mine = summary.step("difficulty")
    assert (mine.ok, mine.failed, mine.usage["requests"]) == (20, 0, 20 + sum(resampled))
    assert mine.columns["difficulty"] == "How hard the teacher finds the question."
    llm.close()

    # The same run again: every reply, the user step's included, comes from the cache.
    llm = rare_hf.LLM("m", base_url=grading_teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache")
    sent = len(grading_teacher.requests)
    again = rare_hf.build_rare_dataset(
        docs, llm, steps=["questions", step, "hard_negatives", "reasoning"], show_progress=False
    )
    assert len(grading_teacher.requests) == sent and again["difficulty"] == ds["difficulty"]
    llm.close()


def test_a_user_step_failures_are_recorded_counted_and_kept(grading_teacher, tmp_path) -> None:
    docs = rare_hf.load_sample_documents().select(range(8))
    questions = datasets.Dataset.from_dict(
        {"question": ["Why are trade-offs hard?"] * 4 + ["Is it odd?"] * 4, "text": docs["text"]}
    )
    llm = rare_hf.LLM("m", base_url=grading_teacher.url, api_key="EMPTY", cache_dir=False)
    strict = rare_hf.PromptStep(
        "difficulty",
        DIFFICULTY,
        outputs={"difficulty": "d", "difficulty_why": "w"},
        parse=parse_difficulty,
        max_attempts=1,
    )
    out, summary = strict(questions, llm, inputs={"document": "text"}, return_summary=True, show_progress=False)
    assert out["difficulty"] == [None] * 4 + ["easy"] * 4
    assert out["difficulty_error"][:4] == ["parse: difficulty must be easy or hard, got 'medium'"] * 4
    assert (summary.ok, summary.failed, summary.failure_reasons) == (4, 4, {"parse": 4})
    llm.close()


def test_the_dry_run_and_the_card_know_a_user_step(grading_teacher, hub, tmp_path) -> None:
    docs = rare_hf.load_sample_documents()
    llm = rare_hf.LLM(
        "m", base_url=grading_teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache", price_per_million=(1.0, 2.0)
    )
    step = difficulty_step()
    steps = ["questions", step, "hard_negatives", "reasoning"]
    before = rare_hf.estimate_run(docs, llm, steps=steps)
    assert [e.step for e in before] == ["questions", "difficulty", "reasoning"]
    mine = before[1]
    assert (mine.requests, mine.cached, mine.completion_tokens) == (20, 0, 20 * 30)
    assert mine.usd == pytest.approx((mine.prompt_tokens * 1.0 + mine.completion_tokens * 2.0) / 1e6, abs=1e-4)
    assert len(grading_teacher.requests) == 0  # nothing was sent

    # Over columns the input already has, the estimate is exact and sees the cache.
    graded = rare_hf.build_rare_dataset(docs, llm, steps=["questions"], show_progress=False)
    step(graded, llm, show_progress=False)
    exact = rare_hf.estimate_run(graded, llm, steps=[step])
    assert [(e.step, e.requests, e.cached, e.completion_tokens) for e in exact] == [("difficulty", 20, 20, 0)]

    ds, summary = rare_hf.build_rare_dataset(docs, llm, steps=steps, return_summary=True, show_progress=False)
    rare_hf.push_to_hub(ds, "tester/custom-step", summary=summary)
    card = hub.file("tester/custom-step", "README.md").decode()
    assert "| `difficulty` | string | How hard the teacher finds the question. |" in card
    assert "| `difficulty_error` | string | Why the difficulty step has no result for the row" in card
    assert re.search(r"\| difficulty \| 20 \| 0 \| 0 \|", card)
    assert "Prompt <code>difficulty-v1</code>" in card and "You grade exam questions." in card
    llm.close()


def test_user_steps_are_checked_before_any_request(grading_teacher, tmp_path) -> None:
    docs = rare_hf.load_sample_documents()
    llm = rare_hf.LLM("m", base_url=grading_teacher.url, api_key="EMPTY", cache_dir=False)
    reads_missing = rare_hf.PromptStep("tone", "Tone of: {review}", outputs={"tone": "t"})
    with pytest.raises(ValueError, match=r"Column 'review' \(inputs\['review'\]\) not found"):
        rare_hf.build_rare_dataset(docs, llm, steps=["questions", reads_missing])
    with pytest.raises(ValueError, match=r"inputs: \['nope'\] are not placeholders"):
        rare_hf.PromptStep("x", "{document}", outputs={"x": "x"}, inputs={"nope": "text"})
    with pytest.raises(ValueError, match=r"parse: 2 outputs"):
        rare_hf.PromptStep("x", "{document}", outputs={"a": "a", "b": "b"})
    with pytest.raises(ValueError, match=r"\['questions'\] given twice"):
        rare_hf.build_rare_dataset(docs, llm, steps=["questions", "questions"])
    assert grading_teacher.requests == []
    llm.close()

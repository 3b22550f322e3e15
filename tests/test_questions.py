"""add_questions against the local teacher over real HTTP."""

from __future__ import annotations

import json

import datasets
import pytest

import rare_hf
from rare_hf.prompts import QUESTION_JSON_PROMPT
from rare_hf.testing import LocalTeacher, Reply
from rare_hf.text.tokens import estimate_tokens

DOCS = [
    "Warfarin dosing is guided by the INR; vitamin K intake, interacting drugs such as amiodarone and "
    "CYP2C9 variants all shift the dose needed to stay in the therapeutic range.",
    "Under the doctrine of consideration, a promise is enforceable only when something of value is given "
    "in exchange; past consideration and pre-existing duties usually do not count.",
    "Soil liquefaction occurs when saturated, loose sandy soil loses strength under cyclic loading, as in "
    "earthquakes, so foundations may tilt or sink unless the ground is densified or piled.",
]


def good_reply(
    question: str = "How should a clinician adjust therapy when a new interacting drug starts?",
    scenario: str = "A patient on a stable regimen is prescribed a second long-term drug.",
) -> str:
    return json.dumps({"hard_queries": [{"scenario": scenario, "question": question}]})


def dataset(n: int = 3) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"text": DOCS[:n], "source": [f"src-{i}" for i in range(n)], "year": list(range(2000, 2000 + n))}
    )


def test_brace_laden_reasoning_before_the_json_parses(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: (
        "Let S = {x in R | x > 0} and consider f() { return {a: 1}; } and $\\frac{1}{2}$ {not json}.\n"
        '{"note": "an unrelated object"}\n'
        "```json\n" + good_reply() + "\n```\nHope this helps {:)}"
    )
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert out[0]["question"] == "How should a clinician adjust therapy when a new interacting drug starts?"
    assert out[0]["scenario"].startswith("A patient on a stable regimen")
    assert out[0]["question_error"] is None and out[0]["question_attempts"] == 1
    assert teacher.request_count == 1


def test_last_object_with_the_expected_keys_wins(teacher: LocalTeacher, make_llm) -> None:
    draft = good_reply(question="A draft question that should be replaced later?")
    teacher.responder = lambda r: f'Draft: {draft}\nFinal:\n{good_reply()}\n{{"unrelated": true}}'
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert out[0]["question"].startswith("How should a clinician")


def test_malformed_then_good_takes_exactly_two_requests_and_repairs(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: good_reply() if len(r["messages"]) > 2 else "Sure! Here it is: {question: oops"
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert teacher.request_count == 2
    repair = teacher.requests[1]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == "Sure! Here it is: {question: oops"
    assert "hard_queries" in repair[3]["content"]
    assert out[0]["question_attempts"] == 2 and out[0]["question_error"] is None


def test_always_malformed_ends_null_with_error_after_max_attempts(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: "I cannot produce JSON {sorry}"
    out, summary = rare_hf.add_questions(
        dataset(1), make_llm(), max_attempts=4, structured="off", show_progress=False, return_summary=True
    )
    assert teacher.request_count == 4
    assert out[0]["question"] is None and out[0]["scenario"] is None
    assert out[0]["question_error"].startswith("parse: no JSON object")
    assert out[0]["question_attempts"] == 4
    # Every attempt differs from the first, so a deterministic teacher does not repeat itself.
    bodies = [json.dumps(r, sort_keys=True) for r in teacher.requests]
    assert len(set(bodies)) == 4
    assert [r.get("temperature") for r in teacher.requests] == [0.0, 0.0, 0.7, 0.7]
    assert [r.get("seed") for r in teacher.requests] == [None, None, 2, 3]
    assert (summary.ok, summary.failed, summary.skipped) == (0, 1, 0)
    assert summary.failure_reasons == {"parse": 1}


def test_questions_that_refer_to_the_document_are_rejected(teacher: LocalTeacher, make_llm) -> None:
    bad = good_reply(question="According to the passage, what affects warfarin dosing?")
    teacher.responder = lambda r: good_reply() if len(r["messages"]) > 2 else bad
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert teacher.request_count == 2
    assert "the passage" in teacher.requests[1]["messages"][3]["content"]
    assert out[0]["question"].startswith("How should a clinician")


def test_copied_question_is_rejected(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: good_reply(question=DOCS[0].split(";")[0])
    out = rare_hf.add_questions(dataset(1), make_llm(), max_attempts=2, show_progress=False)
    assert out[0]["question"] is None and "copies the document" in out[0]["question_error"]


def test_a_reply_cut_off_by_the_budget_is_asked_again_with_twice_the_budget(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply.truncated('{"hard_queries": [{"scenario": "half'))
    teacher.responder = lambda r: good_reply()
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert [r["max_tokens"] for r in teacher.requests] == [1024, 2048]  # the step's default budget, then twice it
    assert teacher.requests[0]["messages"] == teacher.requests[1]["messages"]  # the same prompt, not a repair turn
    assert out[0]["question"] == json.loads(good_reply())["hard_queries"][0]["question"]
    assert out[0]["question_attempts"] == 1


def test_a_looping_reply_is_not_given_more_room_and_says_why(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: Reply.truncated("Let me reconsider the dose once more. " * 200)
    out = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    assert [r["max_tokens"] for r in teacher.requests] == [1024, 1024, 1024]  # three attempts, none doubled
    assert out[0]["question_error"].startswith("truncated: repetitive output")


def test_budgets_default_per_step_and_yield_to_the_llms_and_the_callers(teacher: LocalTeacher, make_llm) -> None:
    ds = rare_hf.add_questions(dataset(1), make_llm(), show_progress=False)
    rare_hf.add_reasoning(ds.add_column("hard_negatives", [[DOCS[1]]]), make_llm(), show_progress=False)
    rare_hf.add_questions(dataset(1), make_llm(max_tokens=300, cache_dir=False), show_progress=False)
    rare_hf.add_questions(dataset(1), make_llm(max_tokens=300, cache_dir=False), max_tokens=77, show_progress=False)
    assert [r["max_tokens"] for r in teacher.requests] == [1024, 4096, 300, 77]


def test_order_and_input_columns_preserved(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: good_reply(
        question="Q about " + r["messages"][1]["content"].split("<document>\n")[1][:30] + "?"
    )
    ds = dataset(3)
    out = rare_hf.add_questions(ds, make_llm(), show_progress=False, batch_size=2)
    assert out.column_names[:3] == ["text", "source", "year"]
    assert out["text"] == DOCS and out["source"] == ["src-0", "src-1", "src-2"] and out["year"] == [2000, 2001, 2002]
    assert out["question"] == [f"Q about {d[:30]}?" for d in DOCS]
    # The schema goes with the request (structured="auto"), so the prompt describes the reply in words.
    assert out["question_prompt_version"] == [QUESTION_JSON_PROMPT.version] * 3
    assert len(set(out["doc_id"])) == 3


def test_num_questions_gives_one_row_per_question(teacher: LocalTeacher, make_llm) -> None:
    out = rare_hf.add_questions(dataset(3), make_llm(), num_questions=3, show_progress=False)
    assert len(out) == 9 and teacher.request_count == 3
    assert "exactly 3 question(s)" in teacher.requests[0]["messages"][1]["content"]
    assert out["question_index"] == [0, 1, 2] * 3
    assert out["text"] == [d for d in DOCS for _ in range(3)]
    ids = out["doc_id"]
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5] != ids[6]
    assert len(set(out["question"])) == 9 and None not in out["question"]


def test_existing_doc_id_is_kept(teacher: LocalTeacher, make_llm) -> None:
    ds = dataset(2).add_column("doc_id", ["a", "b"])
    out = rare_hf.add_questions(ds, make_llm(), num_questions=2, show_progress=False)
    assert out["doc_id"] == ["a", "a", "b", "b"]


def test_many_documents_run_with_many_requests_in_flight(teacher: LocalTeacher, make_llm) -> None:
    teacher.latency = 0.05
    ds = datasets.Dataset.from_dict({"text": [f"{DOCS[i % 3]} Case number {i}." for i in range(2000)]})
    out, summary = rare_hf.add_questions(ds, make_llm(max_concurrency=64), show_progress=False, return_summary=True)
    assert teacher.request_count == 2000 and summary.ok == 2000
    assert teacher.peak_in_flight >= 16  # many at once, never one by one (the exact peak depends on load)
    assert out["text"] == ds["text"]
    # A rerun is answered entirely from the response cache.
    teacher.reset()
    again, summary2 = rare_hf.add_questions(ds, make_llm(), show_progress=False, return_summary=True)
    assert teacher.request_count == 0
    assert summary2.usage["cached"] == 2000 and summary2.usage["requests"] == 0
    assert again["question"] == out["question"]


def test_empty_documents_are_skipped_and_counted_not_sent(teacher: LocalTeacher, make_llm) -> None:
    ds = datasets.Dataset.from_dict({"text": [DOCS[0], "   ", None, DOCS[1]]})
    out, summary = rare_hf.add_questions(ds, make_llm(), show_progress=False, return_summary=True)
    assert teacher.request_count == 2
    assert out["question_error"][1].startswith("skipped") and out["question_error"][2].startswith("skipped")
    assert out["question"][1] is None and out["question"][2] is None
    assert (summary.ok, summary.failed, summary.skipped) == (2, 0, 2)


def test_long_documents_are_truncated_and_recorded(teacher: LocalTeacher, make_llm) -> None:
    long_doc = "word " * 5000
    ds = datasets.Dataset.from_dict({"text": [long_doc, DOCS[0]]})
    out = rare_hf.add_questions(ds, make_llm(), max_doc_chars=1000, show_progress=False)
    assert out["question_input_truncated"] == [True, False]
    sent = (
        teacher.requests[0]["messages"][1]["content"]
        if "word word" in teacher.requests[0]["messages"][1]["content"]
        else teacher.requests[1]["messages"][1]["content"]
    )
    assert sent.count("word") == 200


def test_bad_input_is_refused_before_any_request(teacher: LocalTeacher, make_llm) -> None:
    llm = make_llm()
    with pytest.raises(ValueError, match=r"Column 'body' \(from input_key=\) not found.*\['text', 'source', 'year'\]"):
        rare_hf.add_questions(dataset(), llm, input_key="body")
    with pytest.raises(ValueError, match=r"'year' \(from input_key=\) must hold strings"):
        rare_hf.add_questions(dataset(), llm, input_key="year")
    with pytest.raises(ValueError, match=r"\['source'\] already exist.*overwrite=True"):
        rare_hf.add_questions(dataset(), llm, output_question_key="source")
    with pytest.raises(ValueError, match="max_attempts"):
        rare_hf.add_questions(dataset(), llm, max_attempts=0)
    assert teacher.http_request_count == 0
    out = rare_hf.add_questions(dataset(), llm, output_question_key="source", overwrite=True, show_progress=False)
    assert out["source"][0].startswith("[placeholder")


def test_dataset_dict_and_environment_teacher(teacher: LocalTeacher, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RARE_HF_MODEL", "env-teacher")
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    monkeypatch.setenv("OPENAI_BASE_URL", teacher.url)
    monkeypatch.setenv("RARE_HF_CACHE", str(tmp_path))
    dd = datasets.DatasetDict({"train": dataset(2), "test": dataset(1)})
    out, summary = rare_hf.add_questions(dd, show_progress=False, return_summary=True)
    assert set(out) == {"train", "test"} and len(out["train"]) == 2 and len(out["test"]) == 1
    assert summary.rows_out == 3 and summary.ok == 3
    assert {r["model"] for r in teacher.requests} == {"env-teacher"}


def test_fatal_error_stops_the_step(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply.error(401), times=100)
    ds = datasets.Dataset.from_dict({"text": [f"{DOCS[0]} {i}" for i in range(100)]})
    with pytest.raises(rare_hf.LLMFatalError, match="API key"):
        rare_hf.add_questions(ds, make_llm(max_concurrency=4), show_progress=False)
    assert teacher.request_count <= 4


def test_a_small_model_echoing_the_format_makes_no_row(teacher: LocalTeacher, make_llm) -> None:
    # What SmolLM2-135M did on llama.cpp: a plausible question, and the format's placeholder as the scenario.
    teacher.responder = lambda r: good_reply(scenario="The situation and its constraints")
    out = rare_hf.add_questions(dataset(2), make_llm(), show_progress=False)
    assert out["question"] == [None, None] and teacher.request_count == 2 * 3
    assert all(
        'the scenario echoes the prompt ("<the situation and its constraints>")' in e for e in out["question_error"]
    )


def test_near_duplicate_questions_of_one_document_count_once(teacher: LocalTeacher, make_llm) -> None:
    pairs = [
        {
            "scenario": "A patient starts amiodarone.",
            "question": "How should the warfarin dose change when amiodarone starts?",
        },
        {
            "scenario": "A patient starts amiodarone.",
            "question": "How should the warfarin dose change once amiodarone starts?",
        },
    ]
    distinct = {
        "scenario": "A patient eats more greens.",
        "question": "What INR drift follows a jump in vitamin K intake?",
    }
    replies = iter([json.dumps({"hard_queries": pairs}), json.dumps({"hard_queries": [distinct]})])
    teacher.responder = lambda r: next(replies)
    out = rare_hf.add_questions(dataset(1), make_llm(), num_questions=2, show_progress=False)
    assert out["question"] == [pairs[0]["question"], distinct["question"]] and out["question_attempts"] == [2, 2]


def test_query_length_long_and_varied_ask_for_long_scenarios_and_record_it(teacher: LocalTeacher, make_llm) -> None:
    long_scenario = "A registrar reviews the case. " * 250  # 1,250 words: too long for a short query
    teacher.responder = lambda r: good_reply(scenario=long_scenario)
    docs = datasets.Dataset.from_dict({"text": [f"{DOCS[i % 3]} Case {i}." for i in range(12)]})
    short = rare_hf.add_questions(docs.select(range(1)), make_llm(), show_progress=False)
    assert short["question_error"][0] == "invalid: the question or scenario is implausibly long"
    teacher.reset()
    out = rare_hf.add_questions(docs, make_llm(), query_length="varied", show_progress=False)
    lengths = out["question_length"]
    assert 0 < lengths.count("long") < 12 and lengths.count("long") + lengths.count("short") == 12
    for row in out:
        sent = next(r for r in teacher.requests if row["text"] in r["messages"][1]["content"])
        asked_long = "Write long queries" in sent["messages"][1]["content"]
        assert asked_long == (row["question_length"] == "long")
        assert sent["max_tokens"] == 4096  # long and varied runs get the larger default budget
        assert (row["question_error"] is None) == asked_long  # a long scenario is only fine when asked for
        long_version, short_version = "rare_hf-questions-json-long-v1", "rare_hf-questions-json-v1"
        assert row["question_prompt_version"] == (long_version if asked_long else short_version)
    again = rare_hf.add_questions(docs, make_llm(), query_length="varied", show_progress=False)
    assert again["question_length"] == lengths  # chosen by doc_id, the same on every run


@pytest.mark.parametrize("tokenize, kept_words", [(True, 50), (False, None)])
def test_max_doc_tokens_cuts_by_the_servers_tokenizer_or_a_high_estimate(
    make_llm, tmp_path, tokenize, kept_words
) -> None:
    long_doc = " ".join(f"word{i}" for i in range(400))  # 400 server tokens, ~800 estimated
    with LocalTeacher(tokenize=tokenize) as server:
        llm = rare_hf.LLM("teacher-test", base_url=server.url, api_key="EMPTY", cache_dir=False)
        docs = datasets.Dataset.from_dict({"text": [long_doc]})
        out, summary = rare_hf.add_questions(docs, llm, max_doc_tokens=50, show_progress=False, return_summary=True)
        shown = server.requests[0]["messages"][1]["content"].split("<document>\n")[1].split("\n</document>")[0]
    assert out["question_input_truncated"] == [True] and long_doc.startswith(shown)
    if kept_words is not None:  # the server counts words: cut to at most 50 of them, not far below
        assert 40 <= len(shown.split()) <= 50 and summary.stats["document_tokens"] == "server /tokenize"
    else:  # no tokenizer: the conservative estimate keeps fewer words
        assert estimate_tokens(shown) <= 50 and summary.stats["document_tokens"] == "estimated"

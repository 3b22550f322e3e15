"""Batch mode against the local Batch-API server over real HTTP: whole runs, restarts, expiry, line errors,
repair rounds and dollars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

import rare_hf
from rare_hf.hub import build_card
from rare_hf.testing import LocalTeacher, Reply, demo_responder

PRICE = (0.15, 0.60)


def documents(n: int) -> datasets.Dataset:
    texts = rare_hf.load_sample_documents()["text"]
    return datasets.Dataset.from_dict({"text": [f"Case {i}. {texts[i % len(texts)]}" for i in range(n)]})


def batch_llm(teacher: LocalTeacher, cache: Path, **kwargs) -> rare_hf.LLM:
    kwargs.setdefault("batch_poll_interval", 0.05)
    return rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=cache, batch=True, **kwargs)


def chat_posts(teacher: LocalTeacher) -> int:
    return sum(1 for method, path, _ in teacher.http_log if method == "POST" and "chat/completions" in path)


def test_a_whole_run_in_batch_mode_gives_the_online_rows_at_half_the_price(teacher: LocalTeacher, tmp_path) -> None:
    docs = documents(30)
    online = rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "online")
    expected = rare_hf.build_rare_dataset(docs, online, num_neg=2, show_progress=False)
    online.close()
    teacher.reset()
    llm = batch_llm(teacher, tmp_path / "batch", price_per_million=PRICE)
    out, summary = rare_hf.build_rare_dataset(docs, llm, num_neg=2, show_progress=False, return_summary=True)
    for column in ("question", "scenario", "hard_negatives", "reasoning", "answer"):
        assert out[column] == expected[column], column
    # One batch per LLM step, every line a distinct request, nothing sent online.
    assert [b.total for b in teacher.batch_api.batches.values()] == [30, 30]
    assert len(set(teacher.batch_api.submitted_ids)) == 60 and chat_posts(teacher) == 0
    # Dollars are the server's tokens times the prices, halved.
    paid = (teacher.prompt_tokens * PRICE[0] + teacher.completion_tokens * PRICE[1]) / 2e6
    assert sum(s.usage.get("usd", 0) for s in summary.steps) == pytest.approx(paid, rel=1e-4)
    assert summary.price == {"input_usd": 0.15, "output_usd": 0.6, "discount": 0.5}
    assert "USD paid" in summary.table() and "batch discount x0.5" in summary.table()
    card = build_card(DatasetCard(""), out, num_rows=len(out), repo_id="me/rare", summary=summary).content
    questions = summary.step("questions").usage
    assert f"| {questions['data_usd']:.4f} | {questions['usd']:.4f} |" in card
    assert "$0.15 / $0.6 per million input / output tokens, batch discount x0.5" in card
    llm.close()


def test_a_run_killed_while_waiting_collects_its_batch_and_never_resubmits(tmp_path: Path) -> None:
    script = (
        "import sys, datasets, rare_hf\n"
        "docs = datasets.Dataset.from_dict({'text': [f'Case {i}. ' + t for i, t in "
        "enumerate(rare_hf.load_sample_documents()['text'])]})\n"
        "llm = rare_hf.LLM('teacher-test', base_url=sys.argv[1], api_key='EMPTY', cache_dir=sys.argv[2], "
        "batch=True, batch_poll_interval=0.05)\n"
        "rare_hf.add_questions(docs, llm, show_progress=False)\n"
    )
    with LocalTeacher(batch_seconds=3.0) as teacher:
        cache = tmp_path / "cache"
        child = subprocess.Popen([sys.executable, "-c", script, teacher.url, str(cache)])
        deadline = time.monotonic() + 60
        while not teacher.batch_api.batches and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the journal line is written right after the batch is created
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        journal = [json.loads(line) for line in (cache / "batches.jsonl").read_text().splitlines()]
        assert [(e["batch_id"], e["state"]) for e in journal] == [("batch_1", "submitted")]
        subprocess.run([sys.executable, "-c", script, teacher.url, str(cache)], check=True, timeout=120)
        assert list(teacher.batch_api.batches) == ["batch_1"]  # collected, not submitted again
        assert len(teacher.batch_api.submitted_ids) == len(set(teacher.batch_api.submitted_ids)) == 20
        states = [json.loads(line)["state"] for line in (cache / "batches.jsonl").read_text().splitlines()]
        assert states == ["submitted", "collected"]


def test_an_expired_batch_and_line_errors_go_to_the_next_round(teacher: LocalTeacher, tmp_path: Path) -> None:
    teacher.expire_next_batch(after_lines=8)
    teacher.fail_next(Reply.error(500, message="replica restarted"), Reply.error(429))
    llm = batch_llm(teacher, tmp_path / "cache")
    out, summary = rare_hf.add_questions(documents(20), llm, show_progress=False, return_summary=True)
    assert out["question_error"] == [None] * 20
    first, second = (b for b in teacher.batch_api.batches.values())
    assert (first.status, first.completed, first.failed, first.total) == ("expired", 6, 14, 20)
    assert (second.status, second.total) == ("completed", 14)  # the 2 line errors and the 12 lines never run
    answered_first = set(teacher.batch_api.submitted_ids[:20]) - set(teacher.batch_api.submitted_ids[20:])
    assert len(answered_first) == 6  # nothing answered was sent again
    assert summary.usage["requests"] == 20 and summary.usage["retries"] == 14


def test_lines_that_keep_failing_fail_their_rows_with_the_reason(teacher: LocalTeacher, tmp_path: Path) -> None:
    teacher.responder = lambda request: Reply.error(503, message="no capacity")
    llm = batch_llm(teacher, tmp_path / "cache", max_retries=1)
    out = rare_hf.add_questions(documents(3), llm, show_progress=False)
    assert all("HTTP 503: no capacity (after 2 batch rounds)" in e for e in out["question_error"])
    assert out["question"] == [None] * 3


def test_a_repair_turn_is_the_next_batch_round(teacher: LocalTeacher, tmp_path: Path) -> None:
    def responder(request: dict) -> str:
        first_try = len(request["messages"]) == 2
        if first_try and "Case 1." in request["messages"][-1]["content"]:
            return "I cannot write that in the format you asked."
        return demo_responder(request)

    teacher.responder = responder
    llm = batch_llm(teacher, tmp_path / "cache")
    out = rare_hf.add_questions(documents(5), llm, show_progress=False)
    assert out["question_error"] == [None] * 5 and out["question_attempts"] == [1, 2, 1, 1, 1]
    assert [b.total for b in teacher.batch_api.batches.values()] == [5, 1]
    repair = teacher.requests[-1]["messages"]
    assert len(repair) == 4 and repair[2]["content"] == "I cannot write that in the format you asked."


def test_batch_mode_needs_the_cache_and_one_endpoint(tmp_path: Path) -> None:
    with pytest.raises(rare_hf.LLMConfigError, match="batch=True needs the response cache"):
        rare_hf.LLM("m", api_key="x", base_url="http://127.0.0.1:9/v1", cache_dir=False, batch=True)
    with pytest.raises(rare_hf.LLMConfigError, match="one base_url"):
        rare_hf.LLM("m", api_key="x", base_url=["http://a:1/v1", "http://b:1/v1"], cache_dir=tmp_path, batch=True)


def test_the_cli_dry_run_sends_nothing_then_batch_mode_bills_in_dollars(
    teacher: LocalTeacher, tmp_path: Path, cli
) -> None:

    src = tmp_path / "docs.jsonl"
    documents(12).to_json(str(src), lines=True)
    flags = [str(src), "--model", "teacher-test", "--base-url", teacher.url, "--num-neg", "2", "--price", "0.15,0.60"]
    env = {"OPENAI_API_KEY": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    dry = cli(*flags, "--batch", "--dry-run", "--output", str(tmp_path / "dry"), env=env)
    assert dry.returncode == 0, dry.stderr
    assert teacher.http_request_count == 0 and not (tmp_path / "dry").exists()
    rows = {line.split()[0]: line.split() for line in dry.stdout.splitlines()[2:4]}
    assert rows["questions"][1:3] == ["12", "0"] and rows["reasoning"][1:3] == ["12", "0"]
    assert "Prices include the batch discount." in dry.stdout
    run = cli(*flags, "--batch", "--output", str(tmp_path / "out"), env=env)
    assert run.returncode == 0, run.stderr
    assert "USD paid" in run.stdout and "re-run the same command later to collect" in run.stderr
    steps = json.loads((tmp_path / "out" / "summary.json").read_text())["steps"]
    usd = sum(s["usage"].get("usd", 0) for s in steps)
    assert usd == pytest.approx((teacher.prompt_tokens * 0.15 + teacher.completion_tokens * 0.60) / 2e6, rel=1e-4)
    assert len(teacher.batch_api.batches) == 2 and chat_posts(teacher) == 0
    # The finished run's own --output (before: refused, though a dry run writes nothing).
    again = cli(*flags, "--batch", "--dry-run", "--output", str(tmp_path / "out"), env=env)
    assert again.returncode == 0, again.stderr
    rows = {line.split()[0]: line.split() for line in again.stdout.splitlines()[2:4]}
    assert rows["questions"][1:4] == ["12", "12", "0"]  # every question prompt is cached now
    # The reasoning prompts exist once the cached questions do: a replay from the cache finds every one
    # (before: "12 0", and dollars to pay for a re-run that sends nothing).
    assert rows["reasoning"][1:4] == ["12", "12", "0"] and rows["reasoning"][-1] == "0.0000"


def test_a_step_over_the_batch_limits_is_split_and_matched_back_by_custom_id(teacher: LocalTeacher, tmp_path) -> None:
    llm = batch_llm(teacher, tmp_path / "cache")
    llm._batch_queue().max_requests = 7  # the API's 50,000, scaled down
    out = rare_hf.add_questions(documents(20), llm, show_progress=False)
    assert [b.total for b in teacher.batch_api.batches.values()] == [7, 7, 6]
    online = rare_hf.add_questions(
        documents(20),
        rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=False),
        show_progress=False,
    )
    assert out["question"] == online["question"]


def test_the_local_batch_api_cancels_like_the_real_one(tmp_path: Path) -> None:
    import openai

    with LocalTeacher(batch_seconds=0.5) as teacher:
        client = openai.OpenAI(base_url=teacher.url, api_key="EMPTY")
        lines = "".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
                }
            )
            + "\n"
            for i in range(3)
        )
        upload = client.files.create(file=("in.jsonl", lines.encode(), "application/jsonl"), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert client.batches.cancel(batch.id).status == "cancelling"
        deadline = time.monotonic() + 10
        while (batch := client.batches.retrieve(batch.id)).status != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert batch.status == "cancelled" and batch.output_file_id is None
        errors = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
        assert sorted(e["custom_id"] for e in errors) == ["r0", "r1", "r2"]
        assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and teacher.request_count == 0

"""The LLM engine against the local server over real HTTP: limits, retries, fail-fast, cache, usage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rare_hf
from rare_hf.teacher.cache import ResponseCache
from rare_hf.testing import LocalTeacher, Reply


def prompts(n: int, tag: str = "p") -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{tag} number {i}"}] for i in range(n)]


def echo(request: dict) -> str:
    return "echo: " + request["messages"][-1]["content"]


def test_reply_order_and_content(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    replies = make_llm().complete_many(prompts(30))
    assert [r.text for r in replies] == [f"echo: p number {i}" for i in range(30)]
    assert teacher.request_count == 30


def test_peak_in_flight_never_exceeds_limit(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder, teacher.latency = echo, 0.05
    llm = make_llm(max_concurrency=7)
    replies = llm.complete_many(prompts(60))
    assert len(replies) == 60 and all(isinstance(r, rare_hf.Completion) for r in replies)
    assert 5 <= teacher.peak_in_flight <= 7  # never above the limit; near it, but not exactly at a loaded moment


def test_limit_is_shared_across_concurrent_callers(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder, teacher.latency = echo, 0.05
    llm = make_llm(max_concurrency=5)

    async def two_callers() -> None:
        await asyncio.gather(*(llm.acomplete(p) for p in prompts(20, "a") + prompts(20, "b")))

    asyncio.run(two_callers())
    assert teacher.request_count == 40
    assert 2 <= teacher.peak_in_flight <= 5  # the limit holds across callers; they did run side by side


def test_retry_after_is_honoured_and_an_isolated_429_does_not_shrink_the_limit(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    teacher.fail_next(Reply.error(429, retry_after=0.6))
    llm = make_llm(max_concurrency=8)
    reply = llm.complete(prompts(1)[0])
    assert reply.text == "echo: p number 0"
    assert teacher.request_count == 2
    assert teacher.arrivals[1] - teacher.arrivals[0] >= 0.6
    assert (
        llm._endpoints[0].limiter is not None
        and llm._endpoints[0].limiter.limit == 8
        and llm._endpoints[0].limiter.decreases == 0
    )


def test_5xx_and_hang_are_retried_then_succeed(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    teacher.fail_next(Reply.error(500), Reply.error(503), Reply.hang_forever(), Reply.malformed_body())
    llm = make_llm(timeout=0.5, max_retries=5)
    run = llm.new_run("retry")
    reply = llm.complete(prompts(1)[0], run=run)
    assert reply.text == "echo: p number 0"
    assert teacher.request_count == 5
    assert run.usage.retries == 4 and run.usage.requests == 1


def test_retries_exhausted_is_a_request_error_not_data(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply.error(500), times=3)
    llm = make_llm(max_retries=2)
    with pytest.raises(rare_hf.LLMRequestError, match="HTTP 500"):
        llm.complete(prompts(1)[0])
    assert teacher.request_count == 3
    assert len(ResponseCache(llm.cache_path)) == 0


@pytest.mark.parametrize("status, hint", [(401, "API key"), (404, "model name")])
def test_auth_and_unknown_model_stop_the_run_without_retry_storm(
    teacher: LocalTeacher, make_llm, status: int, hint: str
) -> None:
    teacher.latency = 0.02
    teacher.fail_next(Reply.error(status, message="nope"), times=1000)
    llm = make_llm(max_concurrency=4)
    with pytest.raises(rare_hf.LLMFatalError, match=hint):
        llm.complete_many(prompts(300))
    # Only the requests already in flight when the first answer came back were sent; none was retried.
    assert teacher.request_count in range(1, 5)
    # Cancelled requests gave their slots back: the same LLM serves a new run at full concurrency.
    assert llm._endpoints[0].limiter is not None and llm._endpoints[0].limiter.in_flight == 0
    teacher.reset()
    teacher.responder = echo
    assert [r.text for r in llm.complete_many(prompts(3))] == [f"echo: p number {i}" for i in range(3)]


def test_real_unknown_model_and_bad_key(make_llm, tmp_path: Path) -> None:
    with LocalTeacher(echo, models=["known"], api_key="secret") as server:
        bad_model = make_llm(model="unknown", base_url=server.url, api_key="secret")
        with pytest.raises(rare_hf.LLMFatalError, match="does not exist"):
            bad_model.complete(prompts(1)[0])
        bad_key = make_llm(model="known", base_url=server.url, api_key="wrong")
        with pytest.raises(rare_hf.LLMConfigError, match="refused the API key"):
            bad_key.check_connection()
        with pytest.raises(rare_hf.LLMFatalError, match="API key"):
            bad_key.complete(prompts(1)[0])
        assert server.request_count == 0
        assert server.http_request_count == 3  # one each: no retry of 404 or 401


def test_bad_request_later_in_a_run_fails_only_that_row(teacher: LocalTeacher, make_llm) -> None:
    def responder(request: dict):
        content = request["messages"][-1]["content"]
        return Reply.error(400, message="context too long") if content.endswith(" 5") else "ok"

    teacher.responder = responder
    llm = make_llm(max_concurrency=1)
    replies = llm.complete_many(prompts(8))
    assert [type(r).__name__ for r in replies] == ["Completion"] * 5 + ["LLMRequestError"] + ["Completion"] * 2
    assert replies[5].status_code == 400 and "context too long" in replies[5].reason
    assert teacher.request_count == 8


def test_circuit_breaker_stops_when_most_requests_fail(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda request: Reply.error(502)
    llm = make_llm(max_concurrency=16, max_retries=0)
    with pytest.raises(rare_hf.LLMFatalError, match="of the last 50 attempts failed"):
        llm.complete_many(prompts(400))
    assert teacher.request_count < 80


def test_missing_model_or_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RARE_HF_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(rare_hf.LLMConfigError, match="RARE_HF_MODEL"):
        rare_hf.LLM()
    with pytest.raises(rare_hf.LLMConfigError, match="OPENAI_API_KEY"):
        rare_hf.LLM("some-model")
    with pytest.raises(rare_hf.LLMConfigError, match="http"):
        rare_hf.LLM("m", api_key="k", base_url="localhost:8000")


def test_environment_configuration(monkeypatch: pytest.MonkeyPatch, teacher: LocalTeacher, tmp_path: Path) -> None:
    teacher.responder = echo
    monkeypatch.setenv("RARE_HF_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", teacher.url)
    monkeypatch.setenv("RARE_HF_CACHE", str(tmp_path / "envcache"))
    with rare_hf.LLM() as llm:
        assert llm.complete(prompts(1)[0]).text == "echo: p number 0"
        assert llm.cache_path == tmp_path / "envcache" / "responses.sqlite"
    assert teacher.requests[0]["model"] == "env-model"


def test_rerun_is_served_from_cache_and_key_covers_everything(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    llm = make_llm()
    first = llm.complete_many(prompts(10))
    assert teacher.request_count == 10
    again = make_llm().complete_many(prompts(10))
    assert teacher.request_count == 10
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
    # Any change in what determines a reply is a miss: system prompt, sampling, sample index, model.
    system = [{"role": "system", "content": "be brief"}] + prompts(1)[0]
    llm.complete(system)
    llm.complete(prompts(1)[0], temperature=0.9)
    llm.complete(prompts(1)[0], sample_index=1)
    make_llm(model="other").complete(prompts(1)[0])
    assert teacher.request_count == 14


def test_truncated_reply_is_reported(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply.truncated("half an ans"))
    reply = make_llm().complete(prompts(1)[0])
    assert reply.truncated and reply.finish_reason == "length" and reply.text == "half an ans"


def test_usage_totals_equal_the_servers(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: "word " * (len(r["messages"][-1]["content"]) % 7 + 1)
    llm = make_llm()
    run = llm.new_run("usage")
    llm.complete_many(prompts(25), run=run)
    llm.complete_many(prompts(25), run=run)  # cached: counted apart, no tokens
    assert run.usage.requests == 25 and run.usage.cached == 25
    assert run.usage.prompt_tokens == teacher.prompt_tokens > 0
    assert run.usage.completion_tokens == teacher.completion_tokens > 0
    assert llm.usage.total_tokens == teacher.prompt_tokens + teacher.completion_tokens


def test_works_inside_a_running_event_loop(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    llm = make_llm()

    async def notebook_cell() -> str:
        return llm.complete(prompts(1)[0]).text  # synchronous call while a loop runs, as in Jupyter

    assert asyncio.run(notebook_cell()) == "echo: p number 0"


_CHILD = textwrap.dedent("""
    import sys, rare_hf
    url, cache = sys.argv[1], sys.argv[2]
    llm = rare_hf.LLM("kill-test", base_url=url, api_key="EMPTY", cache_dir=cache, max_concurrency=8)
    replies = llm.complete_many([[{"role": "user", "content": f"p number {i}"}] for i in range(200)])
    sys.stdout.write(str(sum(not r.cached for r in replies)))
""")


def test_killed_run_resumes_with_only_the_missing_requests(teacher: LocalTeacher, tmp_path: Path) -> None:
    teacher.responder, teacher.latency = echo, 0.03
    cache = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, teacher.url, str(cache)], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while teacher.request_count < 80 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    sent_before = teacher.request_count
    stored = len(ResponseCache(cache / "responses.sqlite"))
    # Everything answered before the kill is on disk, except at most the 8 requests in flight.
    assert sent_before - 8 <= stored <= sent_before < 200
    teacher.reset()
    rerun = subprocess.run(
        [sys.executable, "-c", _CHILD, teacher.url, str(cache)], capture_output=True, text=True, check=True
    )
    assert teacher.request_count == 200 - stored == int(rerun.stdout)


def test_cache_reads_other_workers_files_that_appear_during_a_run(tmp_path: Path) -> None:
    mine = ResponseCache(tmp_path / "responses-a.sqlite")
    assert mine.get("k") is None
    other = ResponseCache(tmp_path / "responses-b.sqlite")  # a worker that started after this one
    other.put("k", {"text": "from b"})
    (tmp_path / "responses-c.sqlite").touch()  # a worker still creating its file
    mine.read_also(sorted(tmp_path.glob("responses-*.sqlite")))
    assert mine.get("k") == {"text": "from b"}
    assert sorted(p.name for p in mine._readers) == ["responses-b.sqlite"]  # c is left for a later call
    ResponseCache(tmp_path / "responses-c.sqlite").put("k2", {"text": "from c"})
    mine.read_also(sorted(tmp_path.glob("responses-*.sqlite")))
    assert mine.get("k2") == {"text": "from c"} and mine.get("missing") is None

"""The teacher client against endpoints that misbehave the way real ones do, over real HTTP.

One test (or a few) per failure of the teacher-client issue: deadlines, overload with and without 429s,
dead endpoints, rejected rows, reasoning-model servers, SDK request options, closing, the cache, the
bill after a resume, and credentials in URLs.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.teacher.cache import ResponseCache
from rare_hf.testing import LocalTeacher, Reply


def prompts(n: int, tag: str = "p") -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{tag} number {i}"}] for i in range(n)]


def echo(request: dict) -> str:
    return "echo: " + request["messages"][-1]["content"]


def llm_for(server: LocalTeacher, tmp_path: Path, **kwargs) -> rare_hf.LLM:
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return rare_hf.LLM(kwargs.pop("model", "teacher-test"), base_url=server.url, api_key="EMPTY", **kwargs)


# -- 1. timeout is a deadline --------------------------------------------------------------------------
def test_a_slow_drip_reply_is_cut_at_the_deadline_and_retried(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    teacher.fail_next(Reply.slow_drip("a reply that arrives one byte at a time", interval=0.2))
    llm = make_llm(timeout=1.0, max_retries=2)
    run = llm.new_run("drip")
    started = time.monotonic()
    reply = llm.complete(prompts(1)[0], run=run)
    elapsed = time.monotonic() - started
    assert reply.text == "echo: p number 0"
    assert teacher.request_count == 2 and run.usage.retries == 1
    # The dripping attempt ended at the 1 s deadline (its body alone would take ~60 s), then one backoff: a
    # margin for a loaded machine, far below the minute an uncut drip takes.
    assert elapsed < 10.0


def test_every_dripping_attempt_ends_within_the_timeout(teacher: LocalTeacher, make_llm) -> None:
    teacher.fail_next(Reply.slow_drip(interval=0.3), times=3)
    llm = make_llm(timeout=0.5, max_retries=2)
    started = time.monotonic()
    with pytest.raises(rare_hf.LLMRequestError, match="timeout: no complete reply within 0.5 s"):
        llm.complete(prompts(1)[0])
    assert teacher.request_count == 3
    assert time.monotonic() - started < 12.0  # 3 cut attempts + 2 backoffs (~3.5 s); an uncut drip takes minutes


# -- 2. random 429s do not collapse concurrency ---------------------------------------------------------
def test_random_429s_delay_their_request_without_collapsing_the_limit(tmp_path: Path) -> None:
    quota = [(0.1, Reply.error(429, retry_after=0.2, message="Rate limit reached for requests"))]
    with LocalTeacher(echo, latency=0.03, random_faults=quota, seed=1) as server:
        with llm_for(server, tmp_path, max_concurrency=32) as llm:
            run = llm.new_run("quota")
            replies = llm.complete_many(prompts(800), run=run)
            limiter = llm._endpoints[0].limiter
            assert limiter is not None and limiter.decreases == 0 and limiter.limit == 32
    assert [r.text for r in replies] == [f"echo: p number {i}" for i in range(800)]
    assert 40 <= run.usage.retries <= 130  # ~10 % of ~890 attempts
    # The slow start used the slots the limit allows (never more); at load a slot or two may be between
    # requests at the moment of the peak.
    assert 24 <= server.peak_in_flight <= 32


def test_sustained_429s_shrink_the_limit_and_a_new_run_starts_healthy(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder, teacher.latency = echo, 0.02
    teacher.fail_next(Reply.error(429, retry_after=0.05), times=120)
    llm = make_llm(max_concurrency=32, max_retries=8)
    replies = llm.complete_many(prompts(100))
    assert all(isinstance(r, rare_hf.Completion) for r in replies)
    limiter = llm._endpoints[0].limiter
    assert limiter is not None and limiter.decreases >= 1 and limiter.limit < 16
    teacher.reset()
    teacher.latency = 0.05
    llm.complete_many(prompts(200, "next step"))  # a new run: slow start from a healthy limit again
    assert 24 <= teacher.peak_in_flight <= 32  # back up to (about) the limit, never over it


# -- 3. overload without 429s ---------------------------------------------------------------------------
def test_latency_that_grows_with_load_is_overload_not_a_retry_storm(tmp_path: Path) -> None:
    # 20 ms + 10 ms per request in flight: 256 requests at once would take 2.6 s each, past the timeout.
    with LocalTeacher(echo, latency=0.02, latency_per_in_flight=0.01, keep_log=False) as server:
        with llm_for(server, tmp_path, max_concurrency=256, timeout=1.0) as llm:
            run = llm.new_run("load")
            replies = llm.complete_many(prompts(400), run=run)
    assert sum(isinstance(r, rare_hf.Completion) for r in replies) == 400
    assert server.request_count <= 1.2 * 400
    assert server.peak_in_flight < 90  # latency stayed under the 1 s deadline


# -- 4. a dead endpoint is not hammered ------------------------------------------------------------------
def test_a_dead_endpoint_costs_a_few_dozen_requests(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda request: Reply.error(500, message="upstream is down")
    llm = make_llm(max_concurrency=64, max_retries=6)
    with pytest.raises(rare_hf.LLMFatalError, match="50 attempts failed .*upstream is down"):
        llm.complete_many(prompts(2000))
    assert teacher.request_count <= 100


@pytest.mark.parametrize("status", [501, 505])
def test_statuses_no_retry_can_fix_are_not_retried(teacher: LocalTeacher, make_llm, status: int) -> None:
    teacher.fail_next(Reply.error(status, message="not here"))
    with pytest.raises(rare_hf.LLMRequestError, match=f"HTTP {status}"):
        make_llm(max_retries=5).complete(prompts(1)[0])
    assert teacher.request_count == 1


# -- 5. one bad row does not stop the run -----------------------------------------------------------------
def long_prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"long {i} " + "word " * 500}]


def test_a_context_length_400_first_fails_only_its_row_with_a_hint(tmp_path: Path) -> None:
    with LocalTeacher(echo, max_context_tokens=100) as server, llm_for(server, tmp_path, max_concurrency=1) as llm:
        replies = llm.complete_many([long_prompt(0), *prompts(5)])
    assert isinstance(replies[0], rare_hf.LLMRequestError) and replies[0].status_code == 400
    assert replies[0].reason.startswith("prompt too long for the model's context (HTTP 400: This model's maximum")
    assert replies[0].reason.endswith("lower max_doc_chars")
    assert [r.text for r in replies[1:]] == [f"echo: p number {i}" for i in range(5)]
    assert server.request_count == 6


def test_cache_hits_count_as_successes_so_a_rerun_passes_the_bad_rows(tmp_path: Path) -> None:
    with LocalTeacher(echo, max_context_tokens=100) as server:
        with llm_for(server, tmp_path, max_concurrency=1) as llm:
            first = llm.complete_many([*prompts(3), *(long_prompt(i) for i in range(3))])
        assert [type(r).__name__ for r in first] == ["Completion"] * 3 + ["LLMRequestError"] * 3
        with llm_for(server, tmp_path, max_concurrency=1) as llm:  # the rerun: 3 cache hits, then the bad rows
            again = llm.complete_many([*prompts(3), *(long_prompt(i) for i in range(3))])
    assert [type(r).__name__ for r in again] == ["Completion"] * 3 + ["LLMRequestError"] * 3
    assert all(r.cached for r in again[:3])


def test_different_prompts_rejected_alike_before_any_success_stop_the_run(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda request: Reply.error(400, message="Unsupported parameter: 'top_k'")
    llm = make_llm(max_concurrency=2)
    with pytest.raises(rare_hf.LLMFatalError, match="3 different prompts were all rejected with HTTP 400"):
        llm.complete_many(prompts(500))
    assert teacher.request_count <= 4


# -- 6. reasoning-model teachers ---------------------------------------------------------------------------
def reasoning_rows(n: int, text: str = "Beta blockers slow the heart rate.") -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "text": [f"{text} Document {i}." for i in range(n)],
            "question": [f"Question {i}: which drug class controls the rate first?" for i in range(n)],
            "scenario": [f"Scenario {i}: fast atrial fibrillation." for i in range(n)],
            "hard_negatives": [[f"Negative {i}.{j} about calcium." for j in range(2)] for i in range(n)],
        }
    )


def test_reasoning_content_is_read_as_the_thinking(tmp_path: Path) -> None:
    reply = (
        "<think>Document 2 supports beta blockers; the others are about calcium.</think>\n"
        "<answer>Beta blockers.</answer>"
    )
    with LocalTeacher(lambda r: reply, reasoning_field="reasoning_content") as server:
        with llm_for(server, tmp_path) as llm:
            out, summary = rare_hf.add_reasoning(reasoning_rows(4), llm, show_progress=False, return_summary=True)
    assert server.requests[0]["messages"] and summary.ok == 4 and server.request_count == 4
    assert out["reasoning"] == ["Document 2 supports beta blockers; the others are about calcium."] * 4
    assert out["answer"] == ["Beta blockers."] * 4
    assert out["reasoning_raw"][0].startswith("<think>Document 2") and out["reasoning_raw"][0].endswith("</answer>")


def test_null_content_cut_off_while_thinking_is_truncated_not_malformed(tmp_path: Path) -> None:
    with LocalTeacher(reasoning_field="reasoning_content") as server:
        server.fail_next(Reply.truncated("<think>still thinking about the documents"))
        with llm_for(server, tmp_path) as llm:
            run = llm.new_run("thinking")
            reply = llm.complete(prompts(1)[0], run=run)
    assert reply.truncated and reply.text == "" and reply.reasoning == "still thinking about the documents"
    assert server.request_count == 1 and run.usage.retries == 0
    assert run.usage.completion_tokens == server.completion_tokens > 0


def test_usage_of_an_unusable_reply_is_counted(tmp_path: Path) -> None:
    with LocalTeacher(lambda r: "<think>only thinking, no answer</think>", reasoning_field="reasoning") as server:
        with llm_for(server, tmp_path) as llm:
            out, summary = rare_hf.add_reasoning(
                reasoning_rows(1), llm, max_attempts=2, show_progress=False, return_summary=True
            )
    assert out["reasoning_error"] == ["incomplete: the reply has no final answer"]
    assert summary.usage["requests"] == 2 == server.request_count
    assert summary.usage["completion_tokens"] == server.completion_tokens > 0


# -- 7. SDK request options ----------------------------------------------------------------------------------
def test_extra_body_headers_and_query_behave_as_in_the_sdk(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    llm = make_llm(
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}},
        extra_headers={"X-Team": "rare"},
        extra_query={"api-version": "2024-10-21"},
    )
    llm.complete(prompts(1)[0])
    llm.complete(prompts(1)[0], extra_body={"top_k": 5})  # a per-call value is another request
    body = teacher.requests[0]
    assert body["top_k"] == 20 and body["chat_template_kwargs"] == {"enable_thinking": False}
    assert not any(k.startswith("extra_") for k in body)
    method, path, headers = teacher.http_log[0]
    assert path.endswith("/chat/completions?api-version=2024-10-21") and headers["x-team"] == "rare"
    assert teacher.request_count == 2 and teacher.requests[1]["top_k"] == 5


# -- 8. a closed LLM ------------------------------------------------------------------------------------------
def test_a_closed_llm_raises_a_clear_error(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = echo
    llm = make_llm()
    llm.complete(prompts(1)[0])
    llm.close()
    for call in (lambda: llm.complete(prompts(1)[0]), lambda: llm.complete_many(prompts(2)), llm.new_run):
        with pytest.raises(rare_hf.LLMClosedError, match="was closed.*Create a new rare_hf.LLM"):
            call()
    assert teacher.request_count == 1


# -- 9. the cache -------------------------------------------------------------------------------------------------
def test_the_cache_key_does_not_depend_on_the_url(tmp_path: Path) -> None:
    with LocalTeacher(echo) as first_server:
        with llm_for(first_server, tmp_path) as llm:
            llm.complete_many(prompts(5))
    with LocalTeacher(echo) as moved:  # the server came back on another port
        with llm_for(moved, tmp_path) as llm:
            assert all(r.cached for r in llm.complete_many(prompts(5)))
        assert moved.request_count == 0
        with llm_for(moved, tmp_path, cache_namespace="other-server") as llm:
            assert not any(r.cached for r in llm.complete_many(prompts(5)))
        assert moved.request_count == 5


def test_a_corrupt_cache_is_a_one_line_error_naming_the_file(tmp_path: Path, teacher: LocalTeacher) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "responses.sqlite").write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(rare_hf.CacheError, match=f"{cache / 'responses.sqlite'} is unreadable.*Delete it"):
        rare_hf.LLM("m", base_url=teacher.url, api_key="EMPTY", cache_dir=cache)
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"text": "A document."}) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "rare_hf.cli", str(src), "--model", "m", "--base-url", teacher.url],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "x", "RARE_HF_CACHE": str(cache)},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: The response cache {cache}")
    assert teacher.http_request_count == 0


def test_a_truncated_cache_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    for i in range(2000):
        cache.put(f"k{i}", {"text": "x" * 500})
    cache._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(rare_hf.CacheError, match="is unreadable \\(database disk image is malformed\\)"):
        ResponseCache(path)


def test_cache_files_are_private_and_a_foreign_cache_is_refused(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "new" / "folder" / "responses.sqlite")
    cache.put("k", {"text": "v"})
    cache.close()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "folder").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "folder" / "responses.sqlite").stat().st_mode) == 0o600
    planted = tmp_path / "shared" / "responses.sqlite"
    planted.parent.mkdir()
    ResponseCache(planted).close()
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(planted, 65534, 65534)
    with pytest.raises(rare_hf.CacheError, match="belongs to another user"):
        ResponseCache(planted)


_FULL_DISK_CHILD = textwrap.dedent("""
    import logging, resource, signal, sys, rare_hf
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    url, cache = sys.argv[1], sys.argv[2]
    llm = rare_hf.LLM("full-disk", base_url=url, api_key="EMPTY", cache_dir=cache, max_concurrency=8)
    llm.complete([{"role": "user", "content": "warm up"}])      # the cache file exists and holds one reply
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)                # a full disk: writes past this size fail
    size = (llm.cache_path.stat().st_size + 4096)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    replies = llm.complete_many([[{"role": "user", "content": f"p number {i} " + "x" * 2000}] for i in range(150)])
    print(sum(isinstance(r, rare_hf.Completion) for r in replies))
""")


def test_a_failed_cache_write_warns_once_and_loses_no_reply(teacher: LocalTeacher, tmp_path: Path) -> None:
    teacher.responder, teacher.latency = (lambda r: "a reply " * 200), 0.01
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, teacher.url, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "150"
    assert teacher.request_count == 151
    assert result.stderr.count("Writing to the response cache") == 1


# -- 10. the bill survives a resume ---------------------------------------------------------------------------------
def test_a_resumed_run_reports_what_its_cached_data_cost(teacher: LocalTeacher, make_llm) -> None:
    docs = datasets.Dataset.from_dict({"text": [f"Document {i} on anticoagulation and bleeding." for i in range(8)]})
    _, first = rare_hf.add_questions(docs, make_llm(), show_progress=False, return_summary=True)
    paid_prompt, paid_completion = teacher.prompt_tokens, teacher.completion_tokens
    _, again = rare_hf.add_questions(docs, make_llm(), show_progress=False, return_summary=True)
    assert teacher.request_count == 8
    assert first.usage["prompt_tokens"] == paid_prompt and first.usage["cached_prompt_tokens"] == 0
    assert again.usage["requests"] == 0 and again.usage["prompt_tokens"] == 0
    assert again.usage["cached_prompt_tokens"] == paid_prompt
    assert again.usage["cached_completion_tokens"] == paid_completion
    assert again.usage["data_tokens"] == first.usage["data_tokens"] == paid_prompt + paid_completion


# -- 11. credentials in base_url --------------------------------------------------------------------------------------
def test_credentials_in_the_url_are_never_shown(teacher: LocalTeacher, tmp_path: Path, caplog) -> None:
    url = teacher.url.replace("http://", "http://alice:s3cret-key@")
    llm = rare_hf.LLM("m", base_url=url, api_key="EMPTY", cache_dir=tmp_path / "cache")
    assert "s3cret" not in repr(llm) and "***@127.0.0.1" in repr(llm)
    docs = datasets.Dataset.from_dict({"text": ["Beta blockers control the rate of atrial fibrillation."] * 2})
    _, summary = rare_hf.build_rare_dataset(docs, llm, steps=["questions"], return_summary=True)
    assert "s3cret" not in summary.to_json()
    llm.close()
    teacher.fail_next(Reply.error(401, message="bad key"))
    with caplog.at_level(logging.DEBUG), pytest.raises(rare_hf.LLMFatalError) as stopped:
        rare_hf.LLM("m", base_url=url, api_key="EMPTY", cache_dir=False).complete(prompts(1)[0])
    assert "s3cret" not in str(stopped.value) and "***@" in str(stopped.value)
    assert "s3cret" not in caplog.text


def test_the_cli_shows_and_writes_no_credentials(teacher: LocalTeacher, tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"Beta blockers and rate control, case {i}."}) + "\n" for i in range(2)))
    url = teacher.url.replace("http://", "http://alice:s3cret-key@")
    result = subprocess.run(
        [sys.executable, "-m", "rare_hf.cli", str(src), "--model", "m", "--base-url", url, "--steps", "questions"]
        + ["--output", str(tmp_path / "out"), "--timeout", "5", "--max-retries", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "x", "RARE_HF_CACHE": str(tmp_path / "cache")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "***@127.0.0.1" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr + (tmp_path / "out" / "summary.json").read_text()
    # The credentials went where they belong: basic auth on the requests, in place of the bearer token.
    assert {headers["authorization"] for _, _, headers in teacher.http_log} == {"Basic YWxpY2U6czNjcmV0LWtleQ=="}


def test_add_reasoning_caps_every_document(teacher: LocalTeacher, make_llm) -> None:
    teacher.responder = lambda r: "<think>The first document decides it.</think>\n<answer>Beta blockers.</answer>"
    ds = reasoning_rows(2).map(lambda row, i: {"text": row["text"] * (i * 50_000 + 1)}, with_indices=True)
    out = rare_hf.add_reasoning(ds, make_llm(), max_doc_chars=5_000, show_progress=False)
    assert out["reasoning_input_truncated"] == [False, True] and out["reasoning_error"] == [None, None]
    assert max(len(r["messages"][1]["content"]) for r in teacher.requests) < 5_000 + 2_000
    sent = {r["messages"][1]["content"] for r in teacher.requests}
    rebuilt = {rare_hf.reasoning_messages_for_row(row, max_doc_chars=5_000)[1]["content"] for row in out}
    assert rebuilt == sent

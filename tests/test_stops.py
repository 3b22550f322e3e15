"""A run that must stop ends in one line, with nothing left running and nothing printed after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, demo_responder

# 300 documents through the Python API against a teacher that refuses every request: the script prints one
# line for the exception it catches, then the threads still alive once the run is over.
_FATAL_SCRIPT = """
import sys, threading, datasets, rare_hf
llm = rare_hf.LLM("wrong-model", base_url=sys.argv[1], api_key="wrong", cache_dir=False, max_concurrency=32)
docs = datasets.Dataset.from_dict({"text": [f"Document {i} on topic {i}, with a few words." for i in range(300)]})
try:
    rare_hf.build_rare_dataset(docs, llm, show_progress=False)
except rare_hf.LLMFatalError as exc:
    print("caught:", exc, file=sys.stderr)
llm.close()
print("alive:", sorted(t.name for t in threading.enumerate() if not t.daemon), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("server", "message"),
    [({"api_key": "right"}, "HTTP 401"), ({"models": ["real-model"]}, "HTTP 404")],
    ids=["wrong-key", "wrong-model"],
)
def test_a_fatal_stop_prints_one_line_and_leaves_nothing_running(server: dict, message: str) -> None:
    with LocalTeacher(latency=0.02, **server) as teacher:
        child = subprocess.run(
            [sys.executable, "-c", _FATAL_SCRIPT, teacher.url], capture_output=True, text=True, timeout=120
        )
        sent = teacher.http_request_count
    lines = child.stderr.splitlines()
    # Before: every in-flight row's error logged at garbage collection with its chained traceback (144 MB).
    assert "never retrieved" not in child.stderr and "Traceback" not in child.stderr, child.stderr[:2000]
    assert len(lines) == 2, child.stderr[:2000]
    assert lines[0].startswith("caught: Stopped 'add_questions': the endpoint") and message in lines[0]
    assert ".. " not in lines[0]
    assert lines[1] == "alive: ['MainThread']"
    assert sent < 100  # stopped within the in-flight window, not after 300 rows


def test_a_fatal_stop_on_the_cli_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    datasets.Dataset.from_dict({"text": [f"Document {i} on topic {i}." for i in range(20)]}).to_json(str(src))
    with LocalTeacher(models=["real-model"], latency=0.02) as teacher:
        child = _cli_process(src, teacher.url, tmp_path, model="wrong-model")
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Stopped 'add_questions': the endpoint") and "HTTP 404" in last, stderr[-2000:]
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr[-2000:]


def test_sigterm_stops_the_cli_like_ctrl_c(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().to_json(str(src), lines=True)
    with LocalTeacher(lambda r: Reply(content=demo_responder(r), delay=0.5)) as slow:
        child = _cli_process(src, slow.url, tmp_path)
        deadline = time.monotonic() + 60
        while slow.request_count < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM  # before: -15, killed silently
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("terminated: the replies received so far are cached in ")
    assert "run the same command to resume" in stderr
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _cli_process(src: Path, url: str, tmp_path: Path, model: str = "m") -> subprocess.Popen[str]:
    env = {**os.environ, "K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "rare_hf.cli", str(src), "--model", model, "--base-url", url]
    command += ["--api-key-env", "K", "--output", str(tmp_path / "out"), "--max-concurrency", "2"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_the_llm_counts_every_run_s_retries_and_failures(make_llm, teacher: LocalTeacher) -> None:
    llm = make_llm(max_retries=1, cache_dir=False)
    teacher.fail_next(Reply.error(500), Reply.error(500), Reply.error(500))
    replies = llm.complete_many([[{"role": "user", "content": f"q{i}"}] for i in range(2)])
    assert sum(isinstance(r, rare_hf.LLMRequestError) for r in replies) == 1
    # Before: LLM.usage.retries and .failed stayed 0 whatever happened.
    assert (llm.usage.retries, llm.usage.failed, llm.usage.requests) == (2, 1, 1)


def _prose(request: dict) -> str:
    return "I would be glad to help with this document; it covers several interesting topics in some depth."


def test_a_teacher_that_cannot_do_the_task_stops_the_step_after_the_warm_up(tmp_path: Path) -> None:
    docs = datasets.Dataset.from_dict({"text": [f"Document {i} on topic {i}, with a few words." for i in range(1000)]})
    with LocalTeacher(_prose) as teacher:
        llm = rare_hf.LLM("m", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache")
        with pytest.raises(rare_hf.LLMFatalError) as stopped:
            rare_hf.add_questions(docs, llm, show_progress=False)
        sent = teacher.request_count
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("Stopped 'add_questions': ") and " of the first " in message
    assert "parse: no JSON object" in message and "I would be glad to help" in message
    assert "max_failure_rate=None" in message
    # Before: every row's three attempts, 3,000 requests; now the warm-up's 200 replies and those in flight.
    assert 200 <= sent < 400


def test_the_failure_stop_can_be_turned_off_and_never_fires_below_its_rate(tmp_path: Path) -> None:
    docs = datasets.Dataset.from_dict({"text": [f"Document {i} on topic {i}, with a few words." for i in range(240)]})
    with LocalTeacher(_prose) as teacher:
        llm = rare_hf.LLM("m", base_url=teacher.url, api_key="EMPTY", cache_dir=False, max_failure_rate=None)
        out, summary = rare_hf.add_questions(docs, llm, show_progress=False, return_summary=True)
    assert (summary.failed, summary.failure_reasons) == (240, {"parse": 240})
    assert all(e.startswith("parse: ") for e in out["question_error"])
    with pytest.raises(rare_hf.LLMConfigError, match="max_failure_rate must be in"):
        rare_hf.LLM("m", base_url="http://127.0.0.1:9/v1", api_key="E", max_failure_rate=0)

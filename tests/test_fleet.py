"""One LLM over several replicas of a teacher: routing by spare capacity, resting a dead one, using it again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import rare_hf
from rare_hf.testing import LocalTeacher


def prompts(n: int, tag: str = "p") -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{tag} number {i}"}] for i in range(n)]


def echo(request: dict) -> str:
    return "echo: " + request["messages"][-1]["content"]


def fleet_llm(servers: list[LocalTeacher], tmp_path: Path, **kwargs) -> rare_hf.LLM:
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return rare_hf.LLM("m", base_url=[s.url for s in servers], api_key="EMPTY", timeout=2.0, **kwargs)


def test_work_follows_capacity_and_a_dead_replica_costs_no_row(tmp_path: Path) -> None:
    fast, slow, doomed = (
        LocalTeacher(echo, latency=0.02),
        LocalTeacher(echo, latency=0.06),
        LocalTeacher(echo, latency=0.02),
    )
    for server in (fast, slow, doomed):
        server.start()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 30
        while doomed.request_count < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        doomed.stop()

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        with fleet_llm([fast, slow, doomed], tmp_path, max_concurrency=8) as llm:
            run = llm.new_run("fleet")
            replies = llm.complete_many(prompts(900), run=run)
    finally:
        killer.join()
        fast.stop()
        slow.stop()
    assert [r.text for r in replies] == [f"echo: p number {i}" for i in range(900)]  # every row, in order
    assert doomed.request_count >= 40
    # Join-the-shortest-queue: a replica three times slower serves about a third as many requests.
    # Capacity, not turns: the replica three times slower gets clearly less work (margins hold at load 6).
    assert slow.request_count < 0.8 * fast.request_count
    assert sum(run.endpoints.values()) >= 900 and set(run.endpoints) == {fast.url, slow.url, doomed.url}


def test_a_restarted_replica_is_used_again(tmp_path: Path) -> None:
    steady, flaky = LocalTeacher(echo, latency=0.02).start(), LocalTeacher(echo, latency=0.02).start()
    port = flaky.port
    flaky.stop()  # down from the start
    try:
        with fleet_llm([steady, flaky], tmp_path, max_concurrency=4) as llm:
            first = llm.complete_many(prompts(100, "down"))
            assert all(isinstance(r, rare_hf.Completion) for r in first)
            back = LocalTeacher(echo, latency=0.02, port=port).start()
            try:
                deadline = time.monotonic() + 30
                batch = 0
                while back.request_count == 0 and time.monotonic() < deadline:
                    llm.complete_many(prompts(50, f"up {batch}"))  # its rest ends, a probe succeeds
                    batch += 1
                assert back.request_count > 0
                served_before = back.request_count
                llm.complete_many(prompts(200, "after"))
                assert back.request_count - served_before >= 40  # back in full rotation, not just probed
            finally:
                back.stop()
    finally:
        steady.stop()


def test_the_run_stops_only_when_every_replica_is_down(tmp_path: Path) -> None:
    alive = LocalTeacher(echo).start()
    dead = LocalTeacher(echo).start()
    dead.stop()
    try:
        with fleet_llm([alive, dead], tmp_path) as llm:
            llm.check_connection()  # one replica answers: a warning for the other, no error
        with fleet_llm([dead], tmp_path) as llm, pytest.raises(rare_hf.LLMConfigError, match="Cannot reach"):
            llm.check_connection()
    finally:
        alive.stop()


def test_a_replica_listed_twice_is_refused() -> None:
    with pytest.raises(rare_hf.LLMConfigError, match="lists an endpoint twice"):
        rare_hf.LLM("m", base_url=["http://a:1/v1", "http://a:1/v1/"], api_key="k", cache_dir=False)

"""The pipeline on a real local Ray cluster: the same rows as one machine, and resuming from the actors' caches."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'rare-hf[ray]'")
rare_ray = pytest.importorskip("rare_hf.ray")

COMPARED = ["doc_id", "question", "scenario", "hard_negatives", "reasoning", "answer", "reasoning_doc_order"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # num_cpus=2 deadlocks Ray Data here
    yield
    ray.shutdown()


def documents(n: int) -> datasets.Dataset:
    texts = rare_hf.load_sample_documents()["text"]
    return datasets.Dataset.from_dict({"text": [f"Case {i}. {texts[i % len(texts)]}" for i in range(n)]})


def test_ray_gives_the_rows_of_the_single_machine_path(cluster, teacher: LocalTeacher, tmp_path: Path) -> None:
    docs = documents(24)
    llm = rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "single")
    single, single_summary = rare_hf.build_rare_dataset(docs, llm, num_neg=2, show_progress=False, return_summary=True)
    llm.close()
    teacher.reset()
    options = ray.data.DataContext.get_current().execution_options
    options.preserve_order = False  # the caller's own setting, which the run must leave as it found it
    out, summary = rare_ray.build_rare_dataset_ray(
        docs,
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "ray-cache",
        llm_kwargs={"model": "teacher-test", "base_url": teacher.url, "api_key": "EMPTY"},
        num_neg=2,
        num_actors=2,
        batch_size=12,
        return_summary=True,
    )
    assert len(out) == len(single) == 24 and teacher.request_count == 48
    assert options.preserve_order is False
    for column in COMPARED:
        assert out[column] == single[column], column
    assert len(list((tmp_path / "ray-cache").glob("responses-*.sqlite"))) >= 2  # a file per actor, none shared
    assert len(list((tmp_path / "out" / "data").glob("*.parquet"))) >= 1
    # The summary merged from the batches' is the single machine's, counts and tokens alike.
    assert [s.step for s in summary.steps] == ["questions", "hard_negatives", "reasoning"]
    assert (summary.rows_in, summary.rows_out) == (24, 24)
    for ours, theirs in zip(summary.steps, single_summary.steps):
        assert (ours.rows_in, ours.ok, ours.failed) == (theirs.rows_in, theirs.ok, theirs.failed), ours.step
        for key in ("requests", "prompt_tokens", "completion_tokens"):
            assert ours.usage.get(key) == theirs.usage.get(key), (ours.step, key)
    assert summary.step("hard_negatives").stats == {
        **single_summary.step("hard_negatives").stats,
        "actor_seconds": summary.step("hard_negatives").stats["actor_seconds"],
    }


def test_a_rerun_sends_only_what_no_actor_completed(cluster, teacher: LocalTeacher, tmp_path: Path) -> None:
    settings = {
        "cache_dir": tmp_path / "ray-cache",
        "llm_kwargs": {"model": "teacher-test", "base_url": teacher.url, "api_key": "EMPTY"},
        "num_actors": 2,
        "batch_size": 20,
    }
    # The part a killed job finished: the questions of the first 40 documents.
    rare_ray.build_rare_dataset_ray(documents(40), output_dir=tmp_path / "part", steps=["questions"], **settings)
    assert teacher.request_count == 40
    teacher.reset()
    out, summary = rare_ray.build_rare_dataset_ray(
        documents(80), output_dir=tmp_path / "all", steps=["questions"], return_summary=True, **settings
    )
    assert len(out) == 80 and out["question"].count(None) == 0
    assert teacher.request_count == 40  # only the other 40 questions
    questions = summary.step("questions")
    assert (questions.usage["requests"], questions.usage["cached"], questions.ok) == (40, 40, 80)


def test_the_cli_with_ray_writes_what_it_writes_without(cluster, tmp_path: Path) -> None:
    from rare_hf.cli import main

    common = ["--demo", "--num-neg", "2", "--limit", "8", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--output", str(tmp_path / "single")]) == 0
    assert main([*common, "--output", str(tmp_path / "ray"), "--ray", "--ray-actors", "2"]) == 0
    single, on_ray = (datasets.load_from_disk(str(tmp_path / name / "dataset")) for name in ("single", "ray"))
    assert len(on_ray) == len(single) == 8  # the first bundled sample documents
    for column in COMPARED:
        assert on_ray[column] == single[column], column
    steps = json.loads((tmp_path / "ray" / "summary.json").read_text())["steps"]
    assert [(s["step"], s["ok"]) for s in steps] == [("questions", 8), ("hard_negatives", 8), ("reasoning", 8)]
    assert sum(s["usage"].get("requests", 0) for s in steps) == 0  # every reply came from the first run's cache
    assert not (tmp_path / ".ray.ray").exists()  # the work folder is gone

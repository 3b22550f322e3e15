"""The pipeline on a real local Ray cluster: the same rows as one machine, and resuming from the actors' caches."""

from __future__ import annotations

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
    docs = documents(200)
    llm = rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "single")
    single = rare_hf.build_rare_dataset(docs, llm, num_neg=2, show_progress=False)
    llm.close()
    teacher.reset()
    out = rare_ray.build_rare_dataset_ray(
        docs,
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "ray-cache",
        llm_kwargs={"model": "teacher-test", "base_url": teacher.url, "api_key": "EMPTY"},
        num_neg=2,
        num_actors=2,
        batch_size=50,
    )
    assert len(out) == len(single) == 200 and teacher.request_count == 400
    for column in COMPARED:
        assert out[column] == single[column], column
    assert len(list((tmp_path / "ray-cache").glob("responses-*.sqlite"))) >= 2  # a file per actor, none shared
    assert len(list((tmp_path / "out").glob("*.parquet"))) >= 1


def test_a_rerun_sends_only_what_no_actor_completed(cluster, teacher: LocalTeacher, tmp_path: Path) -> None:
    settings = {
        "cache_dir": tmp_path / "ray-cache",
        "llm_kwargs": {"model": "teacher-test", "base_url": teacher.url, "api_key": "EMPTY"},
        "num_actors": 2,
        "batch_size": 50,
    }
    # The part a killed job finished: the questions of the first 100 documents.
    rare_ray.build_rare_dataset_ray(documents(100), output_dir=tmp_path / "part", steps=["questions"], **settings)
    assert teacher.request_count == 100
    teacher.reset()
    out = rare_ray.build_rare_dataset_ray(documents(200), output_dir=tmp_path / "all", num_neg=2, **settings)
    assert len(out) == 200
    assert teacher.request_count == 100 + 200  # the other 100 questions, and every reasoning request

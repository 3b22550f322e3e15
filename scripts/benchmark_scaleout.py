"""Scale-out on a local Ray: questions rows/s with 1, 2 and 4 actors, and mining questions/s with 1 and 2
actors sharing one memory-mapped index, each beside the single-process figure measured in the same run.

The teacher is rare_hf.testing.LocalTeacher in its own process, 200 ms per reply. Each actor's LLM keeps
``--concurrency`` requests in flight, so the teacher, not the client, sets the pace per actor.

Usage:
    python scripts/benchmark_scaleout.py                   # 2,000 documents, 16 in flight per actor
    python scripts/benchmark_scaleout.py -n 4000 --concurrency 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import datasets
import ray

import rare_hf
import rare_hf.ray

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_llm import FaultServer, heavy_tail_documents  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--num-docs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per actor")
    args = parser.parse_args()
    server = FaultServer()
    url = server.start(demo=True, latency=0.2)
    docs = heavy_tail_documents(args.num_docs)
    llm_kwargs = {"model": "bench", "base_url": url, "api_key": "EMPTY", "max_concurrency": args.concurrency}
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            single = _single(docs, llm_kwargs, Path(tmp) / "single")
            questions = {a: _ray_questions(docs, llm_kwargs, Path(tmp) / f"q{a}", a) for a in (1, 2, 4)}
            mined = rare_hf.add_questions(
                docs, rare_hf.LLM(**llm_kwargs, cache_dir=Path(tmp) / "single"), show_progress=False
            )
            mining_single = _mining_single(mined)
            mining = {a: _ray_mining(mined, Path(tmp) / f"m{a}", a) for a in (1, 2)}
    finally:
        ray.shutdown()
        server.close()
    print(f"{args.num_docs} documents, teacher latency 200 ms, {args.concurrency} requests in flight per actor")
    print(f"questions, single process (one LLM):  {single:8.1f} rows/s")
    for actors, rate in questions.items():
        print(
            f"questions, Ray, {actors} actor(s):          {rate:8.1f} rows/s   "
            f"efficiency {rate / (questions[1] * actors):.2f}"
        )
    print(f"mining, single process:               {mining_single:8.1f} questions/s")
    for actors, rate in mining.items():
        print(
            f"mining, Ray, {actors} actor(s), one mmap index: {rate:8.1f} questions/s   "
            f"efficiency {rate / (mining[1] * actors):.2f}"
        )
    per_actor = max(rate / actors for actors, rate in questions.items())  # more actors than cores cap the others
    hours = 10_000_000 / per_actor / 3600
    print(
        f"a 10M-document questions step at {per_actor:.1f} rows/s per actor: {hours:,.0f} actor-hours "
        f"(e.g. {hours / 64:.1f} h on 64 actors, if the teacher fleet keeps up)"
    )


def _single(docs: datasets.Dataset, llm_kwargs: dict, cache: Path) -> float:
    with rare_hf.LLM(**{**llm_kwargs, "cache_dir": cache / "fresh"}) as llm:
        started = time.perf_counter()
        rare_hf.add_questions(docs, llm, show_progress=False)
        return len(docs) / (time.perf_counter() - started)


def _ray_questions(docs: datasets.Dataset, llm_kwargs: dict, folder: Path, actors: int) -> float:
    started = time.perf_counter()
    rare_hf.ray.build_rare_dataset_ray(
        docs,
        output_dir=folder / "out",
        cache_dir=folder / "cache",
        llm_kwargs=llm_kwargs,
        steps=["questions"],
        num_actors=actors,
        batch_size=max(50, len(docs) // (4 * actors)),
    )
    return len(docs) / (time.perf_counter() - started)


def _mining_single(ds: datasets.Dataset) -> float:
    started = time.perf_counter()
    rare_hf.add_hard_negatives(ds, show_progress=False)
    return len(ds) / (time.perf_counter() - started)


def _ray_mining(ds: datasets.Dataset, folder: Path, actors: int) -> float:
    started = time.perf_counter()
    rare_hf.ray.build_rare_dataset_ray(
        ds,
        output_dir=folder / "out",
        cache_dir=folder / "cache",
        steps=["hard_negatives"],
        num_actors=actors,
        batch_size=max(50, len(ds) // (4 * actors)),
    )
    return len(ds) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

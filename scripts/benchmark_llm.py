"""Benchmark the LLM engine against a bare AsyncOpenAI loop and a 10-thread pool, in one run.

A local OpenAI-compatible server (rare_hf.testing.LocalTeacher) runs in its own process and answers every
request after a fixed latency, so the figures measure client-side throughput at a given concurrency.
Each request carries a realistic ~1,000-token prompt (a different one per request: no cache hits).

Usage:
    python scripts/benchmark_llm.py                      # N=5000, C=256, latency 200 ms
    python scripts/benchmark_llm.py -n 2000 -c 64 --latency 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing as mp
import tempfile
import time

import openai
import requests

import rare_hf
from rare_hf.testing import LocalTeacher

MODEL = "bench-model"
_TEXT = (
    "Atrial fibrillation increases the risk of stroke, and anticoagulation lowers it at the price of "
    "bleeding. Clinicians weigh scores such as CHA2DS2-VASc against HAS-BLED, kidney function, drug "
    "interactions and the patient's preferences before choosing a drug and a dose. "
)


def serve(port_queue: mp.Queue, latency: float) -> None:
    teacher = LocalTeacher(
        lambda request: "A short teacher reply with a handful of tokens in it.", latency=latency, keep_log=False
    )
    teacher.start()
    port_queue.put(teacher.port)
    while True:
        time.sleep(3600)


def prompts(n: int) -> list[list[dict[str, str]]]:
    body = _TEXT * 20  # about 1,000 tokens
    return [
        [
            {"role": "system", "content": "You are a careful domain expert."},
            {"role": "user", "content": f"Request {i}.\n{body}\nWhat should be done first?"},
        ]
        for i in range(n)
    ]


def run_rare_hf(url: str, messages: list, concurrency: int) -> float:
    with (
        tempfile.TemporaryDirectory() as cache,
        rare_hf.LLM(MODEL, base_url=url, api_key="EMPTY", max_concurrency=concurrency, cache_dir=cache) as llm,
    ):
        start = time.perf_counter()
        replies = llm.complete_many(messages)
        elapsed = time.perf_counter() - start
    assert all(isinstance(r, rare_hf.Completion) for r in replies)
    return len(messages) / elapsed


def run_bare(url: str, messages: list, concurrency: int, aiohttp: bool = False) -> float:
    async def main() -> float:
        http_client = openai.DefaultAioHttpClient() if aiohttp else None
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, http_client=http_client)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(m: list) -> str:
            async with semaphore:
                response = await client.chat.completions.create(model=MODEL, messages=m, temperature=0.0)
                return response.choices[0].message.content

        start = time.perf_counter()
        await asyncio.gather(*(one(m) for m in messages))
        elapsed = time.perf_counter() - start
        await client.close()
        return len(messages) / elapsed

    return asyncio.run(main())


def run_thread_pool(url: str, messages: list, workers: int = 10) -> float:
    """How the original operators called the teacher: a pool of 10 threads, one blocking POST each."""

    def post(m: list) -> str:
        response = requests.post(
            f"{url}/chat/completions",
            timeout=60,
            headers={"Authorization": "Bearer EMPTY"},
            json={"model": MODEL, "messages": m, "temperature": 0.0},
        )
        return response.json()["choices"][0]["message"]["content"]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, messages))
    return len(messages) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--num-requests", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument(
        "--pool-sample",
        type=int,
        default=500,
        help="requests sent through the 10-thread pool (its rate does not depend on N)",
    )
    args = parser.parse_args()

    queue: mp.Queue = mp.Queue()
    server = mp.Process(target=serve, args=(queue, args.latency), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{queue.get(timeout=30)}/v1"
    try:
        messages = prompts(args.num_requests)
        ideal = args.concurrency / args.latency
        rare = run_rare_hf(url, messages, args.concurrency)
        bare = run_bare(url, messages, args.concurrency)
        bare_aiohttp = run_bare(url, messages, args.concurrency, aiohttp=True)
        pool = run_thread_pool(url, messages[: args.pool_sample])
    finally:
        server.terminate()
    print(
        f"N={args.num_requests}, C={args.concurrency}, latency={args.latency * 1000:.0f} ms "
        f"(ceiling C/latency = {ideal:,.0f} req/s), ~1,000-token prompts"
    )
    print(f"rare_hf.LLM (cache on):         {rare:8.1f} req/s")
    print(f"bare AsyncOpenAI + Semaphore:   {bare:8.1f} req/s  (SDK's default httpx transport)")
    print(f"  same, aiohttp transport:      {bare_aiohttp:8.1f} req/s  (the transport rare_hf uses)")
    print(f"10-thread pool + requests:      {pool:8.1f} req/s  (sample of {args.pool_sample})")
    print(f"rare_hf / bare client:          {rare / bare:8.2f} x   (target >= 0.9)")
    print(f"rare_hf / bare, same transport: {rare / bare_aiohttp:8.2f} x")
    print(f"rare_hf / thread pool:          {rare / pool:8.1f} x   (target >= 15)")


if __name__ == "__main__":
    main()

"""Benchmark the LLM engine against a bare AsyncOpenAI loop and a 10-thread pool, in one run; with
``--faults``, against endpoints that misbehave, each scenario as a ratio to a clean run of the same size.

A local OpenAI-compatible server (rare_hf.testing.LocalTeacher) runs in its own process and answers every
request after a fixed latency, so the figures measure client-side throughput at a given concurrency.
Each request carries a realistic ~1,000-token prompt (a different one per request: no cache hits).

Usage:
    python scripts/benchmark_llm.py                      # N=5000, C=256, latency 200 ms
    python scripts/benchmark_llm.py -n 2000 -c 64 --latency 0.1
    python scripts/benchmark_llm.py --faults             # 429s, chaos, load-driven latency, dead, slow drip
    python scripts/benchmark_llm.py --heavy-tail         # add_questions under lognormal latencies
    python scripts/benchmark_llm.py --fleet              # one LLM over two equal endpoints against one
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import math
import random
import multiprocessing as mp
import signal
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import datasets
import openai
import requests

import rare_hf
from rare_hf.prompts import question_messages
from rare_hf.testing import LocalTeacher, Reply, demo_responder

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


# -- fault scenarios ------------------------------------------------------------------------------------
_REPLY = "A short teacher reply with a handful of tokens in it."
CAP_S = 600


def _fault_server(conn: Connection) -> None:
    """Serves one LocalTeacher at a time, configured over the pipe; answers "stats" with its counters."""
    teacher: LocalTeacher | None = None
    while True:
        command, payload = conn.recv()
        if command == "start":
            responder = demo_responder if payload.pop("demo", False) else (lambda request: _REPLY)
            teacher = LocalTeacher(responder, keep_log=False, **payload).start()
            conn.send(teacher.port)
        elif command == "stats":
            assert teacher is not None
            conn.send({"requests": teacher.request_count, "peak_in_flight": teacher.peak_in_flight})
            teacher.stop()


class FaultServer:
    def __init__(self) -> None:
        self._conn, child = mp.Pipe()
        self._process = mp.Process(target=_fault_server, args=(child,), daemon=True)
        self._process.start()

    def start(self, **config: Any) -> str:
        self._conn.send(("start", config))
        return f"http://127.0.0.1:{self._conn.recv()}/v1"

    def stop(self) -> dict[str, int]:
        self._conn.send(("stats", None))
        return self._conn.recv()

    def close(self) -> None:
        self._process.terminate()


class _Cap(Exception):
    pass


def _raise_cap(*_: Any) -> None:
    raise _Cap


def run_scenario(server: FaultServer, n: int, config: dict[str, Any], **llm_kwargs: Any) -> dict[str, Any]:
    """One run of n requests: wall time, rows ok, requests the server saw, the stop if any. A run still going
    after ``CAP_S`` seconds is abandoned and reported as such (older clients never end some scenarios)."""
    url = server.start(**config)
    stopped = ""
    ok = 0
    started = time.perf_counter()
    signal.signal(signal.SIGALRM, _raise_cap)
    signal.alarm(CAP_S)
    with (
        tempfile.TemporaryDirectory() as cache,
        rare_hf.LLM(MODEL, base_url=url, api_key="EMPTY", cache_dir=cache, **llm_kwargs) as llm,
    ):
        try:
            replies = llm.complete_many(prompts(n))
            ok = sum(isinstance(r, rare_hf.Completion) for r in replies)
        except rare_hf.LLMFatalError as exc:
            stopped = str(exc)[:90]
        except _Cap:
            stopped = f"did not finish in {CAP_S} s"
        finally:
            signal.alarm(0)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "ok": ok, "stopped": stopped, **server.stop()}


def run_faults(n: int, concurrency: int, latency: float) -> None:
    server = FaultServer()
    quota = Reply.error(429, retry_after=1, message="Rate limit reached for requests per min")
    chaos = [
        (0.10, quota),
        (0.05 / 0.90, Reply.error(500)),  # conditional probabilities: 10 %, 5 %, 1 %, 5 % of all requests
        (0.01 / 0.85, Reply.hang_forever()),
        (0.05 / 0.84, Reply.malformed_body()),
    ]
    try:
        clean = run_scenario(server, n, {"latency": latency}, max_concurrency=concurrency)
        rows = [("clean", n, clean, "")]
        r429 = run_scenario(
            server, n, {"latency": latency, "random_faults": [(0.1, quota)]}, max_concurrency=concurrency
        )
        rows.append(
            (
                "10 % random 429, Retry-After 1 s",
                n,
                r429,
                f"time {r429['seconds'] / clean['seconds']:.2f}x clean (target <= 1.6x)",
            )
        )
        mixed = run_scenario(
            server, n, {"latency": latency, "random_faults": chaos}, max_concurrency=concurrency, timeout=30
        )
        rows.append(
            (
                "429 10 %, 500 5 %, hang 1 %, malformed 5 %, timeout 30 s",
                n,
                mixed,
                f"clean + {mixed['seconds'] - clean['seconds']:.1f} s (target <= clean + 90 s); "
                f"{mixed['ok'] / n:.1%} ok (target >= 99 %)",
            )
        )
        load_n = 500
        load = run_scenario(
            server, load_n, {"latency": 0.2, "latency_per_in_flight": 0.1}, max_concurrency=256, timeout=10
        )
        rows.append(
            (
                "latency 0.2 s + 0.1 s x in flight, no 429, C=256, timeout 10 s",
                load_n,
                load,
                f"requests {load['requests'] / load_n:.2f}x rows (target <= 1.2x); {load['ok'] / load_n:.1%} ok",
            )
        )
        dead = run_scenario(server, 2000, {"random_faults": [(1.0, Reply.error(500))]}, max_concurrency=concurrency)
        rows.append(("always 500", 2000, dead, f"{dead['requests']} requests before the stop (target <= 300)"))
        drip_timeout = 5.0
        drip = run_scenario(
            server,
            8,  # fewer rows than the starting limit: all attempts run side by side
            {"random_faults": [(1.0, Reply.slow_drip(interval=1.0))]},
            max_concurrency=concurrency,
            timeout=drip_timeout,
            max_retries=1,
        )
        per_attempt = (drip["seconds"] - 0.5) / 2  # two attempts and one backoff of at most 0.5 s
        rows.append(
            (
                "slow drip, 1 byte/s, timeout 5 s, 2 attempts",
                8,
                drip,
                f"{per_attempt:.1f} s per attempt (target <= timeout + 1 = {drip_timeout + 1:.0f} s)",
            )
        )
    finally:
        server.close()
    print(f"Fault scenarios: server latency {latency * 1000:.0f} ms, max_concurrency {concurrency} unless said")
    print(f"{'scenario':<62}{'rows':>6}{'ok':>7}{'requests':>10}{'peak':>6}{'seconds':>9}  verdict")
    for name, rows_n, result, verdict in rows:
        stopped = f"  [stopped: {result['stopped']}]" if result["stopped"] else ""
        print(
            f"{name:<62}{rows_n:>6}{result['ok']:>7}{result['requests']:>10}{result['peak_in_flight']:>6}"
            f"{result['seconds']:>9.1f}  {verdict}{stopped}"
        )


# -- heavy-tailed latencies: the streaming runner against a bare client and the batched runner -------------
def heavy_tail_documents(n: int) -> Any:
    texts = rare_hf.load_sample_documents()["text"]
    return datasets.Dataset.from_dict({"text": [f"Case {i}. {texts[i % len(texts)]}" for i in range(n)]})


def run_heavy_tail(n: int, concurrency: int, batch_size: int = 1000) -> None:
    server = FaultServer()
    # The same seeded sequence of latencies for every client: the slowest draws dominate a run's end.
    latency = functools.partial(random.Random(0).lognormvariate, math.log(0.3), 1.0)
    docs = heavy_tail_documents(n)
    try:

        def serve() -> str:
            server.stop()
            return server.start(demo=True, latency=latency)

        url = server.start(demo=True, latency=latency)

        def questions(ds: Any) -> None:
            with (
                tempfile.TemporaryDirectory() as cache,
                rare_hf.LLM(MODEL, base_url=url, api_key="EMPTY", max_concurrency=concurrency, cache_dir=cache) as llm,
            ):
                out = rare_hf.add_questions(ds, llm, show_progress=False)
            assert sum(e is None for e in out["question_error"]) == len(ds)

        started = time.perf_counter()
        questions(docs)
        streaming = n / (time.perf_counter() - started)
        url = serve()
        started = time.perf_counter()
        for start in range(0, n, batch_size):  # what a batch barrier costs: each batch waits for its slowest row
            questions(docs.select(range(start, min(n, start + batch_size))))
        batched = n / (time.perf_counter() - started)
        messages = [question_messages(text[:20_000], 1) for text in docs["text"]]
        bare = run_bare(serve(), messages, concurrency, aiohttp=True)
        server.stop()
    finally:
        server.close()
    print(f"Heavy-tailed latency (lognormal, median 300 ms, sigma 1.0), {n} documents, max_concurrency {concurrency}")
    print(f"add_questions, streaming runner:          {streaming:7.1f} rows/s")
    print(f"add_questions, batches of {batch_size} (0.1 runner): {batched:7.1f} rows/s")
    print(f"bare AsyncOpenAI, {concurrency} in flight over all rows: {bare:7.1f} rows/s")
    print(f"streaming / bare:  {streaming / bare:5.2f}x (target >= 0.92)")
    print(f"batched / bare:    {batched / bare:5.2f}x")


# -- a fleet of replicas: one LLM over two equal endpoints against one ------------------------------------
def run_fleet(n: int, concurrency: int, latency: float) -> None:
    servers = [FaultServer(), FaultServer()]
    try:
        urls = [server.start(latency=latency) for server in servers]
        messages = prompts(n)

        def rate(base_url: Any, per_endpoint: int = concurrency) -> float:
            with (
                tempfile.TemporaryDirectory() as cache,
                rare_hf.LLM(
                    MODEL, base_url=base_url, api_key="EMPTY", max_concurrency=per_endpoint, cache_dir=cache
                ) as llm,
            ):
                started = time.perf_counter()
                replies = llm.complete_many(messages)
                elapsed = time.perf_counter() - started
            assert all(isinstance(r, rare_hf.Completion) for r in replies)
            return n / elapsed

        one = rate(urls[0])
        two = rate(urls)
        served = [server.stop() for server in servers]
        url = servers[0].start(latency=latency)
        ceiling = rate(url, 2 * concurrency)  # the same total concurrency on one endpoint: the machine's limit
    finally:
        for server in servers:
            server.close()
    print(f"Fleet: {n} requests, server latency {latency * 1000:.0f} ms, max_concurrency {concurrency} per endpoint")
    print(f"one endpoint:          {one:7.1f} req/s")
    print(f"two equal endpoints:   {two:7.1f} req/s   ({served[0]['requests']:,} + {served[1]['requests']:,} requests)")
    print(f"two / one:             {two / one:7.2f}x (target >= 1.8)")
    print(f"one endpoint at {2 * concurrency} in flight: {ceiling:7.1f} req/s   (fleet / this: {two / ceiling:.2f}x)")


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
    parser.add_argument("--faults", action="store_true", help="run the fault scenarios instead")
    parser.add_argument("--heavy-tail", action="store_true", help="run the heavy-tailed latency scenario instead")
    parser.add_argument("--fleet", action="store_true", help="compare one endpoint with two equal ones instead")
    parser.add_argument("--cap", type=int, default=CAP_S, help="seconds before a fault scenario is abandoned")
    args = parser.parse_args()
    globals()["CAP_S"] = args.cap
    if args.fleet:
        # At 200 ms two servers and the client saturate a 2-core machine before two endpoints can double the
        # rate of one; 500 ms keeps the machine out of the measurement (the last line shows its ceiling).
        latency = 0.5 if args.latency == 0.2 else args.latency
        run_fleet(args.num_requests if args.num_requests != 5000 else 6000, min(args.concurrency, 64), latency)
        return
    if args.heavy_tail:
        run_heavy_tail(args.num_requests if args.num_requests != 5000 else 3000, min(args.concurrency, 64))
        return
    if args.faults:
        run_faults(args.num_requests if args.num_requests != 5000 else 3000, min(args.concurrency, 64), args.latency)
        return

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

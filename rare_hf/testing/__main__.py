"""``python -m rare_hf.testing``: the offline teacher as a server for your own scripts (the demo's responder:
placeholder questions and reasoning), with the fault modes the tests use."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import LocalTeacher
from .wire import Reply


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rare_hf.testing",
        description="Serve the offline OpenAI-compatible teacher on 127.0.0.1 until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every reply waits (default: 0)")
    parser.add_argument("--api-key", default=None, help="answer 401 to requests without this key (default: any key)")
    parser.add_argument("--models", default=None, help="comma-separated model names; others get 404 (default: any)")
    parser.add_argument(
        "--structured-outputs",
        choices=("ignore", "honour", "reject"),
        default="ignore",
        help="how response_format is served: ignored, honoured, or rejected with HTTP 400 (default: ignore)",
    )
    parser.add_argument("--max-context-tokens", type=int, default=None, help="prompts over this get HTTP 400")
    parser.add_argument("--reasoning-field", default=None, help="serve <think> blocks in this message field")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="share of requests answered 429 (default: 0)")
    parser.add_argument("--server-errors", type=float, default=0.0, help="share of requests answered 500 (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults (default: 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = [(args.rate_limit, Reply.error(429, retry_after=1)), (args.server_errors, Reply.error(500))]
    teacher = LocalTeacher(
        latency=args.latency,
        random_faults=[(share, reply) for share, reply in faults if share > 0],
        seed=args.seed,
        max_context_tokens=args.max_context_tokens,
        reasoning_field=args.reasoning_field,
        port=args.port,
        models=args.models.split(",") if args.models else None,
        api_key=args.api_key,
        keep_log=False,
        structured_outputs=args.structured_outputs,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with teacher:
        print(f"Serving the offline teacher at {teacher.url} (Ctrl-C stops).", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

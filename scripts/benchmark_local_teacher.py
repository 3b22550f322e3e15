"""A small local model as the question teacher: echo and parse rates of the question prompts, side by side.

Runs SmolLM2-135M-Instruct (the package-index model) with llama.cpp in this process (``rare_hf.LLM.local``) on
the bundled sample documents, one request per document (``max_attempts=1``, so each figure is a first reply),
and counts per variant how the replies were judged:

- ``example prompt + schema``: the free-text prompt with its ``<placeholder>`` JSON example, sent with the
  JSON schema (what v0.2 sent under ``structured="auto"``);
- ``words prompt + schema``: the prompt that describes the fields in words (``rare_hf-questions-json-v1``),
  with the schema (what is sent now);
- ``example prompt, free text``: no schema (a server without structured outputs).

Usage:
    pip install -e ".[local]"
    python scripts/benchmark_local_teacher.py            # 12 documents, ~5 minutes on 2 cores
    python scripts/benchmark_local_teacher.py -n 20 --max-chars 1500
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time

import datasets

import rare_hf
from rare_hf.text.prompts import QUESTION_PROMPT


def judge(error: str | None) -> str:
    """The reply's verdict: usable, or the first reason it was not."""
    if error is None:
        return "usable"
    for reason, marker in (("echo", "echoes the prompt"), ("source", "refers to its source"), ("loop", "repetitive")):
        if marker in error:
            return reason
    return error.split(":")[0]  # parse, truncated (at the budget), invalid (other checks), request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--num-docs", type=int, default=12)
    parser.add_argument("--max-chars", type=int, default=1200, help="documents cut to this many characters")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    texts = rare_hf.load_sample_documents()["text"]
    docs = datasets.Dataset.from_dict({"text": [texts[i % len(texts)][: args.max_chars] for i in range(args.num_docs)]})
    # A custom prompt is used as written, schema or not: the v0.2 example prompt, under its own version.
    example = rare_hf.Prompt(system=QUESTION_PROMPT.system, user=QUESTION_PROMPT.user, version="example-v1")
    variants = [
        ("example prompt + schema", {"prompt": example, "structured": "json_schema"}),
        ("words prompt + schema", {"structured": "json_schema"}),
        ("example prompt, free text", {"prompt": example, "structured": "off"}),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        llm = rare_hf.LLM.local("smollm2", n_ctx=2048, parallel=2, cache_dir=cache, max_tokens=args.max_tokens)
        try:
            for name, kwargs in variants:
                started = time.monotonic()
                out = rare_hf.add_questions(docs, llm, max_attempts=1, show_progress=False, **kwargs)
                counts = collections.Counter(judge(e) for e in out["question_error"])
                rows.append((name, counts, time.monotonic() - started))
        finally:
            llm.close()
    kinds = ["usable", "echo", "source", "loop", "truncated", "parse", "invalid", "request"]
    print(f"SmolLM2-135M-Instruct (llama.cpp, 2 slots of 2,048 tokens), {args.num_docs} documents, first replies")
    print(f"{'variant':<28}" + "".join(f"{k:>10}" for k in kinds) + f"{'seconds':>10}")
    for name, counts, seconds in rows:
        print(f"{name:<28}" + "".join(f"{counts[k]:>10}" for k in kinds) + f"{seconds:>10.0f}")
    base = rows[0][1]
    for name, counts, _ in rows[1:]:
        print(f"{name}: echoes {counts['echo']} vs {base['echo']}, usable {counts['usable']} vs {base['usable']}")


if __name__ == "__main__":
    main()

"""rare_hf against a real inference engine: llama.cpp's own server (the ``xllamacpp`` wheel) running SmolLM2-135M
from the package index. These tests judge the protocol (schemas accepted, windows and token counts read from
the server, prompts that fit, resume), never the tiny model's prose."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.teacher.local import LocalServer, resolve_model

pytestmark = [pytest.mark.slow, pytest.mark.llamacpp]

SLOT = 768  # tokens per slot: small, so that cutting to the window is exercised and prompts stay cheap
PROSE = ("parse", "invalid", "truncated", "incomplete")  # what a 135M model may get wrong; never the protocol


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("xllamacpp", reason="the local extra (xllamacpp) is part of the test extra")
    return resolve_model("smollm2", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(model: Path):
    server = LocalServer(model, n_ctx=SLOT, parallel=2, threads=2)
    yield server
    server.close()


def words(n: int, seed: int) -> str:
    vocabulary = "dose renal clearance warfarin interaction monitoring elderly patient kidney liver".split()
    return " ".join(vocabulary[(i * 7 + seed) % len(vocabulary)] for i in range(n))


def kinds(errors: list[str | None]) -> set[str]:
    return {e.split(":")[0] for e in errors if e is not None}


def test_llm_local_serves_a_gguf_says_its_window_counts_tokens_and_stops_on_close(model: Path, tmp_path: Path) -> None:
    llm = rare_hf.LLM.local(model, n_ctx=512, parallel=1, threads=2, cache_dir=tmp_path / "cache", max_tokens=8)
    assert llm.api_key == "EMPTY" and llm.max_concurrency == 1 and llm.model == model.stem
    reply = llm.complete([{"role": "user", "content": "Say yes."}])
    assert reply.completion_tokens > 0 and reply.prompt_tokens > 0
    assert llm.run_sync(llm.acontext_window()) == 512 and llm.facts.context_source == "server /props"
    root = llm.base_url.removesuffix("/v1")
    request = urllib.request.Request(f"{root}/tokenize", data=json.dumps({"content": "renal dose"}).encode())
    tokens = json.load(urllib.request.urlopen(request))["tokens"]
    assert llm.count_tokens("renal dose") == len(tokens) and llm.facts.tokenizer == "server /tokenize"
    port = int(root.rsplit(":", 1)[1])
    llm.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_questions_with_a_json_schema_and_a_document_too_long_for_the_slot(server: LocalServer, tmp_path: Path):
    docs = datasets.Dataset.from_dict({"text": [words(60, 1), words(3000, 3)]})
    llm = rare_hf.LLM(server.model_path.stem, base_url=server.base_url, cache_dir=tmp_path / "cache", max_tokens=96)
    out, summary = rare_hf.add_questions(docs, llm, max_attempts=1, show_progress=False, return_summary=True)
    llm.close()
    # The schema was accepted and honoured (llama.cpp's grammar), and the window read from /props.
    assert summary.stats["structured_output"] == "json_schema"
    assert summary.stats["context_window"] == f"{SLOT} tokens (server /props)"
    assert kinds(out["question_error"]) <= set(PROSE) - {"parse"}  # no HTTP error, no unparsable JSON
    # Before: the 3,000-word document was refused with HTTP 400 "exceeds the available context size".
    assert out["question_input_truncated"] == [False, True]
    assert out["question_input_kept"][0] == 1.0 and 0.05 < out["question_input_kept"][1] < 0.5
    assert summary.stats["rows_cut_to_fit_window"] == 1
    again = rare_hf.LLM(server.model_path.stem, base_url=server.base_url, cache_dir=tmp_path / "cache", max_tokens=96)
    _, resumed = rare_hf.add_questions(docs, again, max_attempts=1, show_progress=False, return_summary=True)
    again.close()
    assert resumed.usage["requests"] == 0 and resumed.usage["cached"] == summary.usage["requests"]


def test_the_reasoning_step_fits_a_small_slot(server: LocalServer, tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {
            "text": [words(700, 4), words(40, 5)],
            "question": ["Which dose suits an elderly patient with poor renal clearance?"] * 2,
            "scenario": ["A ward round."] * 2,
            "hard_negatives": [[words(700, 6), words(700, 7)], [words(40, 8), words(40, 9)]],
        }
    )
    llm = rare_hf.LLM(server.model_path.stem, base_url=server.base_url, cache_dir=tmp_path / "cache", max_tokens=48)
    out, summary = rare_hf.add_reasoning(ds, llm, max_attempts=1, show_progress=False, return_summary=True)
    llm.close()
    # Before: "request (3,000+ tokens) exceeds the available context size (768 tokens)" for the long row.
    assert kinds(out["reasoning_error"]) <= set(PROSE)
    assert out["reasoning_input_truncated"] == [True, False]
    assert all(0.05 < k < 0.6 for k in out["reasoning_input_kept"][0]) and out["reasoning_input_kept"][1] == [1.0] * 3
    assert summary.stats["rows_cut_to_fit_window"] == 1 and summary.usage["requests"] >= 2

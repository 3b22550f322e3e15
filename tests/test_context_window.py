"""Prompts fitted to the teacher's context window, over real HTTP: a server that says its window (llama.cpp's
``/props``) gets prompts that fit it, documents cut to equal shares, each cut recorded in its row."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.steps.window import equal_shares
from rare_hf.testing import LocalTeacher
from rare_hf.testing.wire import count_tokens

WINDOW = 2048


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i % 50}" for i in range(n))


def reasoning_input(doc_words: list[int]) -> datasets.Dataset:
    """One row per entry: a positive and three negatives of that many words each."""
    return datasets.Dataset.from_dict(
        {
            "text": [words(n, f"pos{r}w") for r, n in enumerate(doc_words)],
            "question": [f"Which dose suits patient {r}?" for r in range(len(doc_words))],
            "scenario": ["A ward round."] * len(doc_words),
            "hard_negatives": [[words(n, f"neg{r}{k}w") for k in range(3)] for r, n in enumerate(doc_words)],
        }
    )


def prompt_tokens(request: dict) -> int:
    return sum(count_tokens(str(m.get("content", ""))) for m in request["messages"])


def test_equal_shares_give_short_documents_their_length_and_split_the_rest() -> None:
    assert equal_shares([100, 5000, 5000, 40], 1000) == [100, 430, 430, 40]
    assert equal_shares([10, 20], 1000) == [10, 20]
    assert sum(equal_shares([900, 900, 900], 1000)) <= 1000


def test_the_reasoning_step_fits_a_small_window_and_records_each_cut(tmp_path: Path) -> None:
    ds = reasoning_input([1500, 1500, 60])  # two rows of 6,000 words of documents, one short row
    with LocalTeacher(context_window=WINDOW) as teacher:
        llm = rare_hf.LLM("teacher", base_url=teacher.url, cache_dir=tmp_path / "cache")  # no key: localhost
        out, summary = rare_hf.add_reasoning(ds, llm, show_progress=False, return_summary=True)
        llm.close()
    # Before: the two long rows failed with the server's HTTP 400 (6,000+ tokens > 2,048).
    assert out["reasoning_error"] == [None, None, None]
    assert all(prompt_tokens(r) + r["max_tokens"] <= WINDOW for r in teacher.requests)
    kept = out["reasoning_input_kept"]
    assert out["reasoning_input_truncated"] == [True, True, False]
    assert kept[2] == [1.0] * 4
    for row in kept[:2]:  # equal shares: the positive is cut like the negatives, never told apart by length
        assert all(0.05 < k < 0.4 for k in row) and max(row) - min(row) < 0.05
    # The window cannot hold the 4,096-token budget: every reply gets what the prompt leaves, at least half.
    assert all(WINDOW // 2 <= r["max_tokens"] < 4096 for r in teacher.requests)
    stats = summary.stats
    assert stats["context_window"] == f"{WINDOW} tokens (server /props)"
    assert stats["rows_cut_to_fit_window"] == 2


def test_a_window_too_small_for_the_prompt_fails_its_rows_without_a_request(tmp_path: Path) -> None:
    with LocalTeacher(context_window=300) as teacher:
        llm = rare_hf.LLM("teacher", base_url=teacher.url, cache_dir=tmp_path / "cache", max_tokens=200)
        out = rare_hf.add_reasoning(reasoning_input([400, 400]), llm, show_progress=False)
        llm.close()
    assert teacher.request_count == 0
    assert all(
        e.startswith("context: the prompt needs") and "300-token context window" in e for e in out["reasoning_error"]
    )


def test_the_questions_step_cuts_a_document_to_the_window_and_the_rest_stay_whole(tmp_path: Path) -> None:
    docs = datasets.Dataset.from_dict({"text": [words(5000, "long"), "Warfarin dosing follows the INR closely. " * 5]})
    with LocalTeacher(context_window=WINDOW, structured_outputs="honour") as teacher:
        llm = rare_hf.LLM("teacher", base_url=teacher.url, cache_dir=tmp_path / "cache")
        out, summary = rare_hf.add_questions(docs, llm, show_progress=False, return_summary=True)
        llm.close()
    assert out["question_error"] == [None, None]
    assert out["question_input_truncated"] == [True, False]
    assert 0.1 < out["question_input_kept"][0] < 0.4 and out["question_input_kept"][1] == 1.0
    assert all(prompt_tokens(r) + r["max_tokens"] <= WINDOW for r in teacher.requests)
    assert summary.stats["rows_cut_to_fit_window"] == 1


def test_a_server_that_does_not_say_its_window_gets_the_prompts_as_before(tmp_path: Path) -> None:
    with LocalTeacher() as teacher:
        llm = rare_hf.LLM("teacher", base_url=teacher.url, cache_dir=tmp_path / "cache")
        out, summary = rare_hf.add_reasoning(reasoning_input([1500]), llm, show_progress=False, return_summary=True)
        llm.close()
    assert out["reasoning_input_kept"] == [[1.0] * 4] and out["reasoning_error"] == [None]
    assert "context_window" not in summary.stats
    assert teacher.requests[0]["max_tokens"] == 4096


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://10.0.0.5:8000/v1"])
def test_only_servers_on_this_machine_go_without_a_key(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(rare_hf.LLMConfigError, match="No API key"):
        rare_hf.LLM("m", base_url=url, cache_dir=False)
    for local in ("http://localhost:8080/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1"):
        assert rare_hf.LLM("m", base_url=local, cache_dir=False).api_key == "EMPTY"

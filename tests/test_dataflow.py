"""The seed document's three usage examples, chained as written there (only the imports changed)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

import rare_hf
from rare_hf.dataflow import APILLMServing_request, BM25HardNeg, Doc2Query, FileStorage, ReasonDistill


class RarePipeline:
    """rare_pipeline.py as the seed document describes it, with the placeholders filled in."""

    def __init__(self, api_url: str, entry: str, cache_path: str, cache_type: str) -> None:
        api_llm_serving = APILLMServing_request(
            api_url=api_url,
            model_name="model_name",
            max_workers=5
        )
        self.storage = FileStorage(
            first_entry_file_name=entry,
            cache_path=cache_path,
            file_name_prefix="dataflow_cache_step",
            cache_type=cache_type,  # jsonl, json, ...
        )
        self.api_llm_serving = api_llm_serving

    def forward(self) -> None:
        api_llm_serving = self.api_llm_serving
        doc2query_step = Doc2Query(llm_serving=api_llm_serving)
        doc2query_step.run(
            storage = self.storage.step(),
            input_key = "text",
            output_question_key = "question",
            output_scenario_key = "scenario"
        )
        bm25hardneg_step = BM25HardNeg()
        bm25hardneg_step.run(
            storage = self.storage.step(),
            input_question_key = "question",
            input_text_key = "text",
            output_negatives_key = "hard_negatives",
            num_neg = 3
        )
        reasondistill_step = ReasonDistill(llm_serving=api_llm_serving)
        reasondistill_step.run(
            storage = self.storage.step(),
            input_text_key = "text",
            input_question_key = "question",
            input_scenario_key = "scenario",
            input_hardneg_key = "hard_negatives",
            output_key = "reasoning"
        )


@pytest.mark.parametrize("cache_type", ["json", "jsonl", "parquet", "csv"])
def test_seed_pipeline_runs_end_to_end(teacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       cache_type: str) -> None:
    monkeypatch.setenv("DF_API_KEY", "EMPTY")
    monkeypatch.setenv("RARE_HF_CACHE", str(tmp_path / "llm-cache"))
    docs = rare_hf.load_sample_documents().select(range(10))
    entry = tmp_path / "input.json"
    entry.write_text(json.dumps([{"text": t, "source": d} for t, d in zip(docs["text"], docs["domain"])]))
    cache = tmp_path / "cache"
    RarePipeline(f"{teacher.url}/chat/completions", str(entry), str(cache), cache_type).forward()
    files = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".list_columns.json"))
    assert files == [f"dataflow_cache_step_step{k}.{cache_type}" for k in (1, 2, 3)]
    assert teacher.request_count == 20 and {r["model"] for r in teacher.requests} == {"model_name"}
    final = FileStorage(str(entry), cache_path=str(cache), cache_type=cache_type)
    final.operator_step = 3
    rows = final.read("dict")
    assert len(rows) == 10 and [r["text"] for r in rows] == docs["text"] and rows[0]["source"] == docs["domain"][0]
    for row in rows:
        assert row["question"].startswith("[placeholder") and row["scenario"]
        assert isinstance(row["hard_negatives"], list) and len(row["hard_negatives"]) == 3
        assert all(isinstance(n, str) and n != row["text"] for n in row["hard_negatives"])
        # As the original: the teacher's full reply in output_key; its parts beside it.
        assert row["reasoning"].startswith("<think>[placeholder") and row["reasoning"].endswith("</answer>")
        assert row["reasoning_think"].startswith("[placeholder") and row["reasoning_answer"]
    step1 = FileStorage(str(entry), cache_path=str(cache), cache_type=cache_type)
    step1.operator_step = 1
    assert set(step1.read().columns) >= {"text", "question", "scenario", "doc_id"}
    assert step1.get_keys_from_dataframe() == list(step1.read().columns)
    assert step1.reset().operator_step == -1 and step1.step().read("dict")[0]["text"] == docs["text"][0]


def test_file_storage_defaults_to_jsonl_as_the_original(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "c"))
    assert storage.cache_type == "jsonl"
    storage.step()
    assert storage.write(pd.DataFrame({"text": ["a"]})).endswith("dataflow_cache_step_step1.jsonl")


def test_list_columns_round_trip_in_every_format(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["[placeholder] a", "b"], "hard_negatives": [["x", "y, z"], []],
                       "scores": [[1.5, 2.0], [0.5]], "question": [None, "q"]})
    for cache_type in ("json", "jsonl", "parquet", "csv"):
        storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / cache_type), cache_type=cache_type)
        storage.step()
        storage.write(df)
        storage.step()
        back = storage.read("dict")
        assert back == [{"text": "[placeholder] a", "hard_negatives": ["x", "y, z"], "scores": [1.5, 2.0],
                         "question": None},
                        {"text": "b", "hard_negatives": [], "scores": [0.5], "question": "q"}], cache_type
        ds = storage.read("dataset")
        assert ds.features["hard_negatives"] == datasets.List(datasets.Value("string")), cache_type


def test_serving_needs_its_key_and_accepts_base_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DF_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(rare_hf.LLMConfigError, match="DF_API_KEY"):
        APILLMServing_request(api_url="http://127.0.0.1:1/v1", model_name="m")
    monkeypatch.setenv("MY_KEY", "k")
    serving = APILLMServing_request(api_url="http://127.0.0.1:1/v1/chat/completions", model_name="m",
                                    max_workers=7, key_name_of_api_key="MY_KEY", cache_dir=False)
    assert serving.llm.base_url == "http://127.0.0.1:1/v1" and serving.llm.max_concurrency == 7
    assert APILLMServing_request(api_url="http://h/v1/", model_name="m", key_name_of_api_key="MY_KEY",
                                 cache_dir=False).llm.base_url == "http://h/v1"
    with pytest.raises(RuntimeError, match="storage.step"):
        FileStorage(str(tmp_path / "x.json")).read()

"""Drop-in replacements for the original DataFlow RARE operators: change the imports, keep the pipeline.

``Doc2Query``, ``BM25HardNeg`` and ``ReasonDistill`` take the same constructor arguments and ``run()`` keys
(with the same defaults) as the originals and delegate to :func:`rare_hf.add_questions`,
:func:`rare_hf.add_hard_negatives` and :func:`rare_hf.add_reasoning`. ``FileStorage`` and
``APILLMServing_request`` mirror DataFlow's storage and serving objects.

Example:
    >>> from rare_hf.dataflow import APILLMServing_request, FileStorage, Doc2Query
    >>> serving = APILLMServing_request(api_url="http://localhost:8000/v1/chat/completions",
    ...                                 model_name="Qwen/Qwen2.5-7B-Instruct", max_workers=64)
    >>> storage = FileStorage(first_entry_file_name="docs.jsonl", cache_type="jsonl")
    >>> Doc2Query(llm_serving=serving).run(storage=storage.step(), input_key="text")
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd

from .errors import LLMConfigError
from .steps.negatives import add_hard_negatives
from .steps.questions import add_questions
from .steps.reasoning import add_reasoning
from .teacher.client import LLM

__all__ = ["FileStorage", "APILLMServing_request", "Doc2Query", "BM25HardNeg", "ReasonDistill"]

CacheType = Literal["json", "jsonl", "parquet", "csv"]
_CSV_LIST_COLUMNS = ".list_columns.json"  # sidecar naming the csv columns stored as JSON text


class FileStorage:
    """DataFlow's file-backed storage: step 0 reads the entry file, step k reads the file step k-1 wrote.

    Args:
        first_entry_file_name: The input file (json, jsonl, parquet or csv, by extension).
        cache_path: Folder of the step files.
        file_name_prefix: Step files are ``{cache_path}/{prefix}_step{k}.{cache_type}``.
        cache_type: Format of the step files: ``"jsonl"`` (the original's default), ``"json"``,
            ``"parquet"`` or ``"csv"``.
    """

    def __init__(
        self,
        first_entry_file_name: str,
        cache_path: str = "./cache",
        file_name_prefix: str = "dataflow_cache_step",
        cache_type: CacheType = "jsonl",
    ) -> None:
        if cache_type not in ("json", "jsonl", "parquet", "csv"):
            raise ValueError(f"cache_type must be json, jsonl, parquet or csv, got {cache_type!r}.")
        self.first_entry_file_name = first_entry_file_name
        self.cache_path = cache_path
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self.operator_step = -1

    def step(self) -> FileStorage:
        """Advance to the next operator and return a snapshot of the storage for it."""
        self.operator_step += 1
        return copy.copy(self)

    def reset(self) -> FileStorage:
        """Back to before the first operator (the next :meth:`step` reads the entry file again)."""
        self.operator_step = -1
        return self

    def get_keys_from_dataframe(self) -> list[str]:
        """The column names of this step's input."""
        return list(self.read("dataframe").columns)

    def _step_file(self, step: int) -> Path:
        return Path(self.cache_path) / f"{self.file_name_prefix}_step{step}.{self.cache_type}"

    def read(self, output_type: Literal["dataframe", "dict", "dataset"] = "dataframe") -> Any:
        """This step's input as a pandas DataFrame (default), a list of dicts, or a ``datasets.Dataset``."""
        if self.operator_step < 0:
            raise RuntimeError("Call storage.step() before read(): the storage does not know its step yet.")
        path = Path(self.first_entry_file_name) if self.operator_step == 0 else self._step_file(self.operator_step)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist (step {self.operator_step}); did the previous operator run with this storage?"
            )
        df = _read(path)
        if output_type == "dict":
            return df.to_dict(orient="records")
        if output_type == "dataset":
            return datasets.Dataset.from_pandas(df, preserve_index=False)
        return df

    def write(self, data: Any) -> str:
        """Write this step's output to the next step file, atomically; returns its path."""
        if isinstance(data, datasets.Dataset):
            df = pd.DataFrame(data.to_list(), columns=data.column_names)  # lists stay lists, not numpy arrays
        elif isinstance(data, pd.DataFrame):
            df = data.apply(lambda column: column.map(_plain))
        else:
            df = pd.DataFrame(list(data))
        path = self._step_file(self.operator_step + 1)
        _write(df, path, self.cache_type)
        return str(path)


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path).apply(lambda column: column.map(_plain))
    elif suffix == ".csv":
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        sidecar = path.with_name(path.name + _CSV_LIST_COLUMNS)
        for column in json.loads(sidecar.read_text()) if sidecar.exists() else []:
            df[column] = df[column].map(lambda v: json.loads(v) if isinstance(v, str) else None)
    elif suffix in (".json", ".jsonl"):
        with path.open(encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()] if suffix == ".jsonl" else json.load(f)
        df = pd.DataFrame(records)
    else:
        raise ValueError(f"{path}: unsupported file type; use .json, .jsonl, .parquet or .csv.")
    return df.astype(object).where(df.notna(), None)  # missing values are None, never NaN


def _plain(value: Any) -> Any:
    """numpy arrays (how pandas holds Arrow lists) as plain lists, so every format stores real lists."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def _write(df: pd.DataFrame, path: Path, cache_type: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if cache_type == "parquet":
            df.to_parquet(tmp, index=False)
        elif cache_type == "csv":
            list_columns = [c for c in df.columns if df[c].map(lambda v: isinstance(v, (list, dict))).any()]
            encoded = df.copy()
            for column in list_columns:
                encoded[column] = encoded[column].map(
                    lambda v: None if v is None else json.dumps(v, ensure_ascii=False)
                )
            encoded.to_csv(tmp, index=False)
            Path(str(path) + _CSV_LIST_COLUMNS).write_text(json.dumps(list_columns))
        else:
            records = json.loads(df.to_json(orient="records", force_ascii=False))
            with open(tmp, "w", encoding="utf-8") as f:
                if cache_type == "jsonl":
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
                else:
                    json.dump(records, f, ensure_ascii=False, indent=2)
        os.replace(tmp, path)  # readers never see a half-written step file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class APILLMServing_request:  # noqa: N801 - the original's name
    """DataFlow's API serving object, backed by :class:`rare_hf.LLM`.

    Args:
        api_url: A base URL (``http://host:8000/v1``) or a full ``.../chat/completions`` URL.
        model_name: The teacher model.
        max_workers: Most requests in flight (rare_hf's ``max_concurrency``).
        key_name_of_api_key: Environment variable holding the API key.
        **llm_kwargs: Passed on to :class:`rare_hf.LLM` (``temperature``, ``cache_dir``, ...).
    """

    def __init__(
        self,
        api_url: str = "https://api.openai.com/v1/chat/completions",
        model_name: str = "gpt-4o",
        max_workers: int = 10,
        key_name_of_api_key: str = "DF_API_KEY",
        **llm_kwargs: Any,
    ) -> None:
        api_key = os.environ.get(key_name_of_api_key) or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise LLMConfigError(
                f"No API key: set the environment variable {key_name_of_api_key} "
                "(named by key_name_of_api_key). Local servers accept any value, e.g. EMPTY."
            )
        base_url = api_url.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            if base_url.endswith(suffix):
                base_url = base_url[: -len(suffix)]
        self.llm = LLM(model_name, base_url=base_url, api_key=api_key, max_concurrency=max_workers, **llm_kwargs)


class Doc2Query:
    """Step 1 of RARE: a standalone, reasoning-intensive question and scenario per document."""

    def __init__(self, llm_serving: APILLMServing_request, max_attempts: int = 3) -> None:
        self.llm_serving = llm_serving
        self.max_attempts = max_attempts

    def run(
        self,
        storage: FileStorage,
        input_key: str = "text",
        output_question_key: str = "question",
        output_scenario_key: str = "scenario",
        max_attempts: int | None = None,
    ) -> list[str]:
        ds = storage.read("dataset")
        out = add_questions(
            ds,
            self.llm_serving.llm,
            input_key=input_key,
            output_question_key=output_question_key,
            output_scenario_key=output_scenario_key,
            max_attempts=max_attempts or self.max_attempts,
            overwrite=True,
        )
        storage.write(out)
        return [output_question_key, output_scenario_key]


class BM25HardNeg:
    """Step 2 of RARE: BM25 hard negatives for every question."""

    def __init__(self, num_neg: int = 3) -> None:
        self.num_neg = num_neg

    def run(
        self,
        storage: FileStorage,
        input_question_key: str = "question",
        input_text_key: str = "text",
        output_negatives_key: str = "hard_negatives",
        num_neg: int | None = None,
    ) -> list[str]:
        ds = storage.read("dataset")
        out = add_hard_negatives(
            ds,
            input_question_key=input_question_key,
            input_text_key=input_text_key,
            output_negatives_key=output_negatives_key,
            num_neg=num_neg or self.num_neg,
            overwrite=True,
        )
        storage.write(out)
        return [output_negatives_key]


class ReasonDistill:
    """Step 3 of RARE: the teacher's reasoning over the positive and the shuffled hard negatives.

    ``output_key`` gets the teacher's full reply, as in the original operator (``None`` when the row failed,
    never a failed reply). Beside it: ``{output_key}_think`` (the reasoning), ``{output_key}_answer`` (the
    final answer), ``{output_key}_raw`` (the last reply, failed or not) and the columns
    :func:`rare_hf.add_reasoning` documents (document order, attempts, error).
    """

    def __init__(self, llm_serving: APILLMServing_request) -> None:
        self.llm_serving = llm_serving

    def run(
        self,
        storage: FileStorage,
        input_text_key: str = "text",
        input_question_key: str = "question",
        input_scenario_key: str = "scenario",
        input_hardneg_key: str = "hard_negatives",
        output_key: str = "reasoning",
    ) -> list[str]:
        ds = storage.read("dataset")
        out = add_reasoning(
            ds,
            self.llm_serving.llm,
            input_text_key=input_text_key,
            input_question_key=input_question_key,
            input_scenario_key=input_scenario_key,
            input_hardneg_key=input_hardneg_key,
            output_key=output_key,
            output_answer_key=f"{output_key}_answer",
            overwrite=True,
        )
        out = out.rename_column(output_key, f"{output_key}_think")
        raw, errors = out[f"{output_key}_raw"], out[f"{output_key}_error"]
        out = out.add_column(output_key, [r if e is None else None for r, e in zip(raw, errors)])
        storage.write(out)
        return [output_key]

"""Shared fixtures: a real local OpenAI-compatible server and real rare_hf.LLM clients talking HTTP to it."""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import LocalHub  # noqa: E402  (standard library only: safe before the env is set)

# A Hub-compatible server for the whole session. huggingface_hub and datasets read these variables at
# import time, so they are set before anything imports them.
LOCAL_HUB = LocalHub().__enter__()
os.environ.update(
    {
        "HF_ENDPOINT": LOCAL_HUB.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_TOKEN": "hf_local_test_token",
        "HF_HOME": tempfile.mkdtemp(prefix="rare_hf_test_hf_home_"),
        # The response cache's default folder (the CLI demo's too): never the user's ~/.cache.
        "RARE_HF_CACHE": tempfile.mkdtemp(prefix="rare_hf_test_cache_"),
    }
)

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import rare_hf  # noqa: E402
from rare_hf.testing import LocalTeacher  # noqa: E402


@pytest.fixture
def hub() -> LocalHub:
    return LOCAL_HUB


@pytest.fixture
def teacher() -> Iterator[LocalTeacher]:
    with LocalTeacher() as server:
        yield server


@pytest.fixture
def make_llm(teacher: LocalTeacher, tmp_path: Path):
    """Build LLMs against the local teacher; each gets the test's own cache folder unless told otherwise."""
    made: list[rare_hf.LLM] = []

    def make(**kwargs) -> rare_hf.LLM:
        kwargs.setdefault("base_url", teacher.url)
        kwargs.setdefault("api_key", "EMPTY")
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("timeout", 5.0)
        llm = rare_hf.LLM(kwargs.pop("model", "teacher-test"), **kwargs)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        llm.close()


# Tests that start a Ray cluster, a CLI subprocess or compile a kernel: the fast loop is `pytest -m "not slow"`.
_SLOW_FILES = {"test_ray.py"}
_SLOW_NAMES = ("cli", "numba", "demo", "killed", "ctrl_c", "sigkill")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in _SLOW_FILES or any(word in item.name.lower() for word in _SLOW_NAMES):
            item.add_marker(pytest.mark.slow)

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


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):
    """The command line run in this process, as a subprocess would see it (the environment stripped of
    credentials plus ``env``, the working folder ``cwd``, everything written to the file descriptors
    captured) but seconds faster: no interpreter and no ``datasets`` to start. Tests of what an import
    reads from the environment (HF_ENDPOINT, HF_HOME) or of signals keep their subprocess."""
    import logging
    import subprocess

    from rare_hf.cli import main

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            for name in [k for k in os.environ if k.startswith(("OPENAI", "RARE_HF", "HF_TOKEN"))]:
                patch.delenv(name)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            capfd.readouterr()
            root = logging.getLogger()
            handlers, level = root.handlers[:], root.level
            root.handlers.clear()  # main's logging.basicConfig then sets up stderr as in a process of its own
            try:
                code = main(list(args))
            except SystemExit as exc:  # --help and argparse's own errors
                code = exc.code if isinstance(exc.code, int) else 2
            finally:
                root.handlers[:], root.level = handlers, level
            out = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run

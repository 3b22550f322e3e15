"""What the tool says at its edges is true: a refused connection, a mistyped path, the offline server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest

import rare_hf


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_a_refused_connection_is_called_that(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    llm = rare_hf.LLM("m", base_url=url, api_key="EMPTY", cache_dir=False, max_retries=1, timeout=5)
    with pytest.raises(rare_hf.LLMConfigError) as unreachable:
        llm.check_connection()
    # Before: "Cannot reach the teacher at ... (APITimeoutError)" for a port nobody listens on.
    assert "connection refused" in str(unreachable.value) and "Timeout" not in str(unreachable.value)
    with pytest.raises(rare_hf.LLMRequestError, match=r"^connection refused: .*\(after 2 attempts\)$"):
        llm.complete([{"role": "user", "content": "Hi"}])
    llm.close()


def test_cli_a_mistyped_path_is_a_one_line_error_at_once(tmp_path: Path, cli) -> None:
    env = {"K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    for given in ("docs.jsonl", "./corpus", "data/raw/docs"):
        child = cli(given, "--model", "m", "--api-key-env", "K", env=env, cwd=tmp_path)
        # Before: tried as a Hub id, 27-31 s of retries and 23 lines, never "no such file".
        assert child.returncode == 2
        assert child.stderr.strip().splitlines() == [f"error: {given}: no such file or folder."]


def test_the_offline_teacher_runs_as_a_server_of_its_own(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "rare_hf.testing", "--port", "0", "--api-key", "secret", "--models", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("Serving the offline teacher at http://127.0.0.1:")
        url = line.split(" at ")[1].split(" ")[0]
        client = openai.OpenAI(base_url=url, api_key="secret", max_retries=0)
        reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "Hi"}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0 and stderr == ""  # before: printed nothing, served nothing, exited 0


def test_the_offline_teacher_help_lists_its_fault_modes() -> None:
    out = subprocess.run([sys.executable, "-m", "rare_hf.testing", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--port", "--api-key", "--models", "--structured-outputs", "--rate-limit", "--server-errors"):
        assert flag in out.stdout

"""The command line as a new user meets it: fast help, one-line errors, Ctrl-C, its own output as input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from test_pipeline import _cli

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, demo_responder


def test_help_and_import_load_no_heavy_library() -> None:
    probe = (
        "import sys, rare_hf, rare_hf.testing, rare_hf.cli; rare_hf.cli.build_parser().format_help(); "
        "print(sorted(m for m in ('datasets', 'openai', 'bm25s', 'numba', 'pyarrow') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
    help_text = _cli("--help").stdout
    assert help_text.startswith("usage: rare-hf") and "examples:" in help_text
    for flag in ("--max-concurrency", "--temperature", "--max-tokens", "--num-neg", "--num-questions", "--seed"):
        assert flag in help_text and "default" in help_text.split(flag, 2)[-1].split("\n  -")[0]


@pytest.mark.parametrize("name, content", [("empty.jsonl", b""), ("blank.jsonl", b"\n")])
def test_an_empty_input_file_is_a_one_line_error(tmp_path: Path, name: str, content: bytes, cli) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = cli(str(path), "--model", "m", "--base-url", "http://127.0.0.1:9/v1", env={"OPENAI_API_KEY": "x"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "no" in result.stderr


def test_a_zero_row_parquet_is_a_one_line_error(tmp_path: Path, cli) -> None:
    path = tmp_path / "none.parquet"
    datasets.Dataset.from_dict({"text": []}, features=datasets.Features({"text": datasets.Value("string")})).to_parquet(
        str(path)
    )
    result = cli(str(path), "--model", "m", env={"OPENAI_API_KEY": "x"})
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"error: {path} has no rows: there are no documents to read."
    )


def test_cli_a_zero_row_parquet_written_by_pyarrow_is_one_line(tmp_path: Path, cli) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), str(path))  # no row groups at all
    result = cli(str(path), "--model", "m", env={"OPENAI_API_KEY": "x"})
    # Before: three lines, one of them datasets' own log line, ending "An error occurred while generating".
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path} has no rows: there are no documents to read."


@pytest.mark.parametrize("name", ["latin.jsonl", "latin.csv"])
def test_cli_input_that_is_not_utf8_is_one_line_naming_file_line_and_fix(tmp_path: Path, name: str, cli) -> None:
    path = tmp_path / name
    rows = '{"text": "ok"}\n{"text": "caf\xe9 au lait"}\n' if name.endswith("jsonl") else 'text\nok\n"caf\xe9"\n'
    path.write_bytes(rows.encode("latin-1"))
    line = 2 if name.endswith("jsonl") else 3
    result = cli(str(path), "--model", "m", "--dry-run", env={"OPENAI_API_KEY": "x"})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}: line {line} is not UTF-8. Pass its encoding (e.g. --encoding")
    assert "iconv -f latin1 -t utf-8" in result.stderr
    read = cli(str(path), "--encoding", "latin-1", "--model", "m", "--dry-run", env={"OPENAI_API_KEY": "x"})
    assert read.returncode == 0 and "dry run: 2 rows" in read.stdout, read.stderr


def test_the_cli_reads_back_its_own_output(teacher: LocalTeacher, tmp_path: Path, cli) -> None:
    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().select(range(6)).to_json(str(src), lines=True)
    env = {"K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    teacher_args = ["--model", "m", "--base-url", teacher.url, "--api-key-env", "K"]
    first = cli(str(src), *teacher_args, "--steps", "questions", "--output", str(tmp_path / "q"), env=env)
    assert first.returncode == 0, first.stderr
    for given in (tmp_path / "q", tmp_path / "q" / "dataset"):  # the output folder, or its dataset folder
        out = tmp_path / f"neg-{given.name}"
        second = cli(str(given), "--steps", "negatives", "--output", str(out), env=env)
        assert second.returncode == 0, second.stderr
        assert len(datasets.load_from_disk(str(out / "dataset"))) == 6
        assert len((out / "triples.jsonl").read_text().splitlines()) == 6
    # The README's example: a step run again over its own columns (before: "Pass overwrite=True", which the
    # command line cannot pass).
    again = cli(str(tmp_path / "neg-q"), "--steps", "negatives", "--num-neg", "1", "--output", str(tmp_path / "n1"))
    assert again.returncode == 0, again.stderr
    assert {len(n) for n in datasets.load_from_disk(str(tmp_path / "n1" / "dataset"))["hard_negatives"]} == {1}


def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().to_json(str(src), lines=True)
    slow = LocalTeacher(lambda r: Reply(content=demo_responder(r), delay=0.5)).start()
    try:
        env = {**os.environ, "K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rare_hf.cli",
                str(src),
                "--model",
                "m",
                "--base-url",
                slow.url,
                "--api-key-env",
                "K",
                "--output",
                str(tmp_path / "out"),
                "--max-concurrency",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            # A shell's background job (CI runners, `cmd &`) starts with SIGINT ignored, and Python keeps an
            # ignored SIGINT: give the child the default, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while slow.request_count < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        slow.stop()
    assert child.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: the replies received so far are cached in ")
    assert "run the same command to resume" in stderr
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_the_demo_resumes_from_its_own_cache(tmp_path: Path, cli) -> None:
    env = {"RARE_HF_CACHE": str(tmp_path / "cache")}
    first = cli("--demo", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    again = cli("--demo", "--overwrite", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "40 responses came from the cache" in again.stdout
    summary = json.loads((tmp_path / "rare_demo_output" / "summary.json").read_text())
    assert [s["usage"]["requests"] for s in summary["steps"] if s["usage"]] == [0, 0]


def test_local_model_arguments_are_checked_before_anything_starts(tmp_path: Path, cli) -> None:
    missing = cli("--demo", "--local-model", str(tmp_path / "model.gguf"), "--output", str(tmp_path / "o"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == f"error: model: no such file {str(tmp_path / 'model.gguf')!r}."
    both = cli("--demo", "--local", "--base-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "o"))
    assert both.returncode == 2 and "leave out --base-url and --model" in both.stderr.strip().splitlines()[-1]
    not_a_model = cli("--demo", "--local-model", "llama", "--output", str(tmp_path / "o"))
    assert "is not a GGUF file, 'owner/repo:file.gguf' on the Hub, or 'smollm2'" in not_a_model.stderr
    assert not (tmp_path / "o").exists()

"""build_rare_dataset, the exports, and the CLI end to end against the local teacher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_rare_dataset.py"


@pytest.fixture
def docs() -> datasets.Dataset:
    return rare_hf.load_sample_documents()


def test_sample_documents_are_real_and_sized(docs: datasets.Dataset) -> None:
    assert 20 <= len(docs) <= 50
    assert docs.column_names == ["doc_id", "domain", "title", "text"]
    assert all(150 <= len(t.split()) <= 400 for t in docs["text"])
    assert len(set(docs["domain"])) >= 5


def test_build_rare_dataset_chains_the_steps(teacher: LocalTeacher, make_llm, docs) -> None:
    out, summary = rare_hf.build_rare_dataset(docs, make_llm(), num_neg=3, show_progress=False, return_summary=True)
    assert len(out) == 20 and teacher.request_count == 40
    assert [s.step for s in summary.steps] == ["questions", "hard_negatives", "reasoning"]
    assert summary.rows_in == 20 and summary.rows_out == 20 and summary.dropped_failed == 0
    assert all(len(n) == 3 for n in out["hard_negatives"])
    assert all(r.startswith("[placeholder") for r in out["reasoning"])
    assert summary.step("questions").usage["requests"] == 20
    assert summary.prompt_versions["reasoning"] == "rare_hf-reasoning-v1"
    assert summary.model == "teacher-test"
    assert "questions" in summary.table() and "rows out: 20" in summary.table()
    assert rare_hf.RunSummary.from_dict(json.loads(summary.to_json())) == summary


def test_failed_rows_are_dropped_by_default_and_counted(teacher: LocalTeacher, make_llm, docs) -> None:
    from rare_hf.testing import demo_responder

    broken = set(docs["text"][:3])

    def responder(request: dict) -> str:
        prompt = request["messages"][1]["content"]
        asks_questions = "# Retrieved Documents" not in prompt
        return "no json" if asks_questions and any(b in prompt for b in broken) else demo_responder(request)

    teacher.responder = responder
    out, summary = rare_hf.build_rare_dataset(
        docs, make_llm(), show_progress=False, return_summary=True, question_kwargs={"max_attempts": 2}
    )
    assert len(out) == 17 and summary.dropped_failed == 3
    assert summary.step("questions").failed == 3 and summary.step("reasoning").skipped == 3
    kept = rare_hf.build_rare_dataset(
        docs, make_llm(), keep_failed=True, show_progress=False, question_kwargs={"max_attempts": 2}
    )
    assert len(kept) == 20 and sum(e is not None for e in kept["question_error"]) == 3


def test_missing_inputs_of_later_steps_fail_before_any_request(teacher: LocalTeacher, make_llm, docs) -> None:
    with pytest.raises(ValueError, match="question"):
        rare_hf.build_rare_dataset(docs, make_llm(), steps=["hard_negatives", "reasoning"])
    with pytest.raises(ValueError, match=r"'hard_negatives' \(a hard negatives column \(no hard_negatives step\)\)"):
        rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "reasoning"])
    with pytest.raises(ValueError, match=r"'gold' \(from answer_key=\)"):
        rare_hf.build_rare_dataset(docs, make_llm(), answer_key="gold")
    with pytest.raises(ValueError, match="Unknown step"):
        rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "summaries"])
    assert teacher.http_request_count == 0


def test_sft_export_has_documents_in_recorded_order(teacher: LocalTeacher, make_llm, docs) -> None:
    out = rare_hf.build_rare_dataset(docs, make_llm(), show_progress=False)
    sft = rare_hf.to_sft(out)
    assert sft.column_names == ["messages"] and len(sft) == 20
    for record, row in zip(sft, out):
        system, user, assistant = record["messages"]
        assert [system["role"], user["role"], assistant["role"]] == ["system", "user", "assistant"]
        pool = [row["text"], *row["hard_negatives"]]
        positions = [user["content"].index(pool[i]) for i in row["reasoning_doc_order"]]
        assert positions == sorted(positions)  # documents appear in the recorded order
        assert row["question"] in user["content"] and row["scenario"] in user["content"]
        assert assistant["content"] == f"<think>\n{row['reasoning']}\n</think>\n<answer>\n{row['answer']}\n</answer>"
    # The student sees exactly what the teacher saw.
    teacher_prompts = {r["messages"][1]["content"] for r in teacher.requests}
    assert all(m[1]["content"] in teacher_prompts for m in sft["messages"])
    rare = rare_hf.to_sft(out, "rare", keep_columns=["doc_id"])
    assert sorted(rare.column_names) == ["doc_id", "instruction", "output", "predict"]
    assert rare[0]["output"] == out[0]["answer"] and rare[0]["predict"].startswith("<think>")


def test_retrieval_triples_schema(teacher: LocalTeacher, make_llm, docs) -> None:
    out = rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "hard_negatives"], show_progress=False)
    triples = rare_hf.to_retrieval_triples(out)
    assert triples.column_names == ["query_id", "query", "positive_passages", "negative_passages"]
    row, src = triples[0], out[0]
    assert row["query"] == f"{src['scenario']}\n{src['question']}"
    assert row["positive_passages"] == [{"docid": src["doc_id"], "title": src["title"], "text": src["text"]}]
    assert [p["docid"] for p in row["negative_passages"]] == src["hard_negatives_ids"]
    assert [p["text"] for p in row["negative_passages"]] == src["hard_negatives"]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "RARE_HF", "HF_TOKEN"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=240,
    )


def test_cli_end_to_end_against_the_local_server(teacher: LocalTeacher, tmp_path: Path, docs, cli) -> None:
    src = tmp_path / "docs.jsonl"
    docs.to_json(str(src), lines=True)
    env = {"MY_KEY": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    args = [
        str(src),
        "--model",
        "cli-teacher",
        "--base-url",
        teacher.url,
        "--api-key-env",
        "MY_KEY",
        "--output",
        str(tmp_path / "out"),
        "--limit",
        "12",
        "--num-neg",
        "2",
    ]
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "re-run the same command to resume" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_in"] == 12 and summary["rows_out"] == 12
    # dedup runs by default on the command line; the sample documents have no near-duplicate
    assert [(s["step"], s["ok"]) for s in summary["steps"]] == [
        ("dedup", 12), ("questions", 12), ("hard_negatives", 12), ("reasoning", 12)
    ]  # fmt: skip
    assert summary["steps"][1]["usage"]["requests"] == 12 == summary["steps"][3]["usage"]["requests"]
    assert teacher.request_count == 24
    saved = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert len(saved) == 12 and all(len(n) == 2 for n in saved["hard_negatives"])
    export = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "messages.jsonl"), split="train")
    assert len(export) == 12 and export[0]["messages"][2]["role"] == "assistant"
    assert len(datasets.Dataset.from_parquet(str(tmp_path / "out" / "messages.parquet"))) == 12
    # The same command again refuses to overwrite the output folder; with --overwrite it resumes from the
    # cache (no request is sent) and replaces the folder only when the new one is complete.
    refused = cli(*args, env=env)
    assert refused.returncode == 2 and "pass --overwrite" in refused.stderr and teacher.request_count == 24
    again = cli(*args, "--overwrite", "--format", "messages,triples", env=env)
    assert again.returncode == 0 and teacher.request_count == 24
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"messages.jsonl", "triples.jsonl", "dataset"}
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert "24 responses came from the cache" in again.stdout


def test_cli_demo_runs_with_no_environment(tmp_path: Path) -> None:
    result = _cli("--demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "PLACEHOLDER" in result.stdout
    summary = json.loads((tmp_path / "rare_demo_output" / "summary.json").read_text())
    assert summary["rows_out"] == 20 and summary["model"] == "rare-hf-demo-teacher"
    assert (tmp_path / "rare_demo_output" / "messages.jsonl").exists()


@pytest.mark.parametrize(
    "extra, env, message",
    [
        (["--text-column", "body"], {"K": "x"}, "Column 'body' (--text-column) not found"),
        (["--answer-column", "gold"], {"K": "x"}, "Column 'gold' (--answer-column) not found"),
        # A server on this machine needs no key; a remote replica beside it does.
        (["--base-url", "https://api.example.com/v1"], {}, "no API key: set the environment variable K"),
        (["--steps", "negatives,reasoning"], {"K": "x"}, "Column 'question' (a question column from an earlier run)"),
        (["--steps", "summaries"], {"K": "x"}, "--steps: unknown step"),
        (["--format", "messages", "--steps", "questions,negatives"], {"K": "x"}, "needs the reasoning step"),
    ],
)
def test_cli_configuration_errors_exit_nonzero_before_any_request(
    teacher: LocalTeacher,
    tmp_path: Path,
    docs,
    extra: list[str],
    env: dict,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rare_hf.cli import main

    src = tmp_path / "docs.jsonl"
    docs.to_json(str(src), lines=True)
    for name in [k for k in os.environ if k.startswith(("OPENAI", "RARE_HF", "HF_TOKEN")) or k == "K"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    teacher_args = ["--model", "m", "--base-url", teacher.url, "--api-key-env", "K"]
    code = main([str(src), *teacher_args, "--output", str(tmp_path / "out"), *extra])  # in this process: fast
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # progress bars may precede it
    assert last.startswith("error: ") and message in last
    assert teacher.http_request_count == 0


def test_cli_push_without_a_token_stops_before_any_request(teacher: LocalTeacher, tmp_path: Path, docs) -> None:
    src = tmp_path / "docs.jsonl"
    docs.to_json(str(src), lines=True)
    teacher_args = ["--model", "m", "--base-url", teacher.url, "--api-key-env", "K"]
    env = {"K": "x", "HF_HOME": "/nonexistent-hf-home"}  # read when huggingface_hub is imported: its own process
    result = _cli(str(src), *teacher_args, "--output", str(tmp_path / "out"), "--push-to-hub", "me/data", env=env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "needs a Hugging Face token" in last
    assert teacher.http_request_count == 0


def test_cli_unreachable_endpoint_and_bad_input(tmp_path: Path, docs, cli) -> None:
    src = tmp_path / "docs.jsonl"
    docs.to_json(str(src), lines=True)
    dead = cli(str(src), "--model", "m", "--base-url", "http://127.0.0.1:9/v1", env={"OPENAI_API_KEY": "x"})
    assert dead.returncode == 2 and "Cannot reach the teacher" in dead.stderr
    missing = cli(str(tmp_path / "nope.txt"), "--model", "m", env={"OPENAI_API_KEY": "x", "HF_HUB_OFFLINE": "1"})
    assert missing.returncode == 2 and missing.stderr.strip().endswith("nope.txt: no such file or folder.")


def test_the_opt_in_steps_run_in_the_pipeline_and_the_card(teacher: LocalTeacher, tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    from rare_hf.hub import build_card

    llm = rare_hf.LLM("teacher-test", base_url=teacher.url, api_key="EMPTY", cache_dir=tmp_path / "cache")
    steps = ["questions", "hard_negatives", "verify_negatives", "written_negatives", "reasoning"]
    out, summary = rare_hf.build_rare_dataset(
        rare_hf.load_sample_documents(), llm, num_neg=2, steps=steps, show_progress=False, return_summary=True
    )
    assert [s.step for s in summary.steps] == steps and len(out) == 20
    negatives = summary.step("hard_negatives")
    assert negatives.params["num_neg"] == 4  # mined twice as deep, so dropped ones have replacements
    assert all(len(n) == 2 for n in out["hard_negatives"])  # verified down to num_neg
    assert out["hard_negatives_verify_error"] == [None] * 20 and all(len(w) == 1 for w in out["written_negatives"])
    # The reasoning saw the verified negatives, and each written request showed its own positive.
    reasoning_prompts = [
        r["messages"][1]["content"] for r in teacher.requests if "# Retrieved Documents" in r["messages"][1]["content"]
    ]
    assert len(reasoning_prompts) == 20 and all(p.count('<document index="') == 3 for p in reasoning_prompts)
    card = build_card(DatasetCard(""), out, num_rows=len(out), repo_id="me/rare", summary=summary).content
    assert "rare_hf-verify-v1" in card and "rare_hf-written-negatives-v1" in card
    assert "`written_negatives`" in card and "`hard_negatives_false_negatives`" in card
    with pytest.raises(ValueError, match="verify_kwargs: verify_negatives takes no argument"):
        rare_hf.build_rare_dataset(rare_hf.load_sample_documents(), llm, steps=steps, verify_kwargs={"nope": 1})


def test_a_column_the_run_would_replace_is_an_error_before_any_step(teacher: LocalTeacher, make_llm, docs) -> None:
    own = docs.add_column("reasoning", ["the user's own notes"] * len(docs))  # a column the last step writes
    with pytest.raises(ValueError, match=r"reasoning step would replace .*'reasoning'.*overwrite=True"):
        rare_hf.build_rare_dataset(own, make_llm(), show_progress=False)
    assert teacher.request_count == 0  # before: the questions were paid for, then the reasoning step refused
    out = rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "hard_negatives"], show_progress=False)
    again = rare_hf.build_rare_dataset(out, steps=["hard_negatives"], num_neg=1, overwrite=True, show_progress=False)
    assert {len(n) for n in again["hard_negatives"]} == {1} and len(again) == len(out)


def test_the_input_s_own_ids_and_titles_run_through_to_the_triples(teacher: LocalTeacher, make_llm, docs) -> None:
    own = docs.remove_columns("doc_id").add_column("id", [f"PMID-{1000 + i}" for i in range(len(docs))])
    out = rare_hf.build_rare_dataset(own, make_llm(), steps=["questions", "hard_negatives"], show_progress=False)
    assert out["doc_id"] == out["id"]  # before: a hash of the text
    title_of = dict(zip(own["id"], own["title"]))
    triples = rare_hf.to_retrieval_triples(out)
    for row in triples:
        positive = row["positive_passages"][0]
        assert positive["docid"].startswith("PMID-") and positive["title"] == title_of[positive["docid"]] != ""
        assert [p["title"] for p in row["negative_passages"]] == [
            title_of[p["docid"]] for p in row["negative_passages"]
        ]
    # Ids that are not unique cannot name documents: the text's hash is used, as without an id column.
    twice = own.remove_columns("id").add_column("id", ["same"] * len(own))
    hashed = rare_hf.add_questions(twice, make_llm(), show_progress=False)
    assert hashed["doc_id"] == [rare_hf.utils.datasets.doc_id_for(t) for t in hashed["text"]]

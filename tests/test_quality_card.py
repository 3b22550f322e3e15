"""The dataset card's Quality section and figure, from a real run of every quality filter over HTTP."""

from __future__ import annotations

import datasets
from huggingface_hub import DatasetCard

import rare_hf
from rare_hf.hub import build_card
from rare_hf.io.plots import card_plots
from test_decontaminate import benchmark_and_rows
from test_dedup import planted_corpus


def test_card_quality_section_counts_each_filter(make_llm) -> None:
    ds, planted = planted_corpus(num_docs=40, copies=6)
    benchmark, contaminated, _, embedded = benchmark_and_rows()
    texts = list(ds["text"]) + [contaminated[i]["text"] for i in sorted(embedded)]
    docs = ds.from_dict({"text": texts})
    out, summary = rare_hf.build_rare_dataset(
        docs,
        make_llm(),
        steps=["dedup", "questions", "decontaminate", "dedup_questions", "hard_negatives", "easiness", "reasoning"],
        decontaminate_kwargs={"against": benchmark, "action": "drop", "input_keys": ["text"]},
        show_progress=False,
        return_summary=True,
    )
    assert summary.filtered["duplicate"] == 6 and summary.filtered["contaminated"] == 3
    card = build_card(DatasetCard(""), out, num_rows=len(out), repo_id="me/rare", summary=summary).content
    section = card.split("## Quality", 1)[1].split("\n## ", 1)[0]
    assert (
        "- Rows the quality filters removed: " in section and "duplicate 6" in section and "contaminated 3" in section
    )
    assert "Near-duplicate documents (MinHash over 5-word shingles, exact Jaccard >= 0.7): 6 in 6 clusters" in section
    assert "3 rows share any 13-word runs of text with the 20 texts of the evaluation set; dropped" in section
    assert "Easy rows (positive ranked first, score margin >= 0.5" in section
    assert "| lexical overlap |" in section and "| score margin |" in section
    assert "easiness.png" in card_plots(out, summary)
    plain = rare_hf.build_rare_dataset(docs.select(range(5)), make_llm(), show_progress=False, return_summary=True)[1]
    assert "## Quality" not in build_card(DatasetCard(""), out, num_rows=5, repo_id="me/r", summary=plain).content


def test_the_cli_runs_the_filters_and_says_what_they_removed(cli, teacher, tmp_path) -> None:
    import json

    ds, planted = planted_corpus(num_docs=30, copies=5)
    benchmark, contaminated, _, embedded = benchmark_and_rows()
    texts = list(ds["text"]) + [contaminated[i]["text"] for i in sorted(embedded)]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    against = tmp_path / "eval.txt"
    against.write_text("\n".join(benchmark) + "\n")
    env = {"K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache")}
    teacher_args = ["--model", "m", "--base-url", teacher.url, "--api-key-env", "K"]
    flags = [
        str(source),
        *teacher_args,
        "--steps",
        "dedup,questions,negatives",
        "--against",
        str(against),
        "--drop-easy",
    ]
    dry = cli(*flags, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert any(line.split()[:2] == ["questions", "33"] for line in dry.stdout.splitlines())  # 38 - 5 duplicates
    done = cli(*flags, "--reference-answers", "--output", str(tmp_path / "o"), env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["filtered"]["duplicate"] == 5 and summary["filtered"]["contaminated"] == 3
    assert [s["step"] for s in summary["steps"]] == [
        "dedup",
        "questions",
        "decontaminate",
        "hard_negatives",
        "easiness",
    ]
    assert "filtered out: " in done.stdout and "5 duplicate" in done.stdout
    assert summary["params"]["question_kwargs"] == {"reference_answer": True}
    written = datasets.load_from_disk(str(tmp_path / "o" / "dataset"))
    assert all(a.startswith("[placeholder] ") for a in written["reference_answer"])
    missing = cli(
        str(source), *teacher_args, "--steps", "questions,decontaminate", "--output", str(tmp_path / "x"), env=env
    )
    assert missing.returncode == 2 and "--against" in missing.stderr
    on_ray = cli(*flags, "--ray", "--output", str(tmp_path / "r"), env=env)
    assert on_ray.returncode == 2 and "do not run on Ray yet" in on_ray.stderr

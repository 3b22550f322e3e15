"""push_to_hub against a Hub-compatible server on 127.0.0.1, then load_dataset back from it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard, HfApi

import rare_hf
from rare_hf.hub import RUN_CONFIG_FILENAME


@pytest.fixture
def built(teacher, make_llm):
    docs = rare_hf.load_sample_documents()
    return rare_hf.build_rare_dataset(docs, make_llm(), show_progress=False, return_summary=True)


def card_of(hub, repo: str) -> tuple[dict, str]:
    text = hub.file(repo, "README.md").decode()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_push_writes_data_card_and_run_config(hub, built) -> None:
    ds, summary = built
    url = rare_hf.push_to_hub(ds, "tester/rare-demo", license="cc-by-4.0", summary=summary)
    assert url.endswith("/datasets/tester/rare-demo")
    back = datasets.load_dataset("tester/rare-demo", download_mode="force_redownload")
    assert list(back) == ["train"] and len(back["train"]) == 20
    assert back["train"]["question"] == ds["question"] and back["train"]["hard_negatives"] == ds["hard_negatives"]
    meta, body = card_of(hub, "tester/rare-demo")
    # datasets' own YAML survives the card edit.
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 20
    assert {f["name"] for f in meta["dataset_info"]["features"]} >= {"question", "hard_negatives", "reasoning"}
    assert meta["license"] == "cc-by-4.0" and meta["size_categories"] == ["n<1K"]
    assert set(meta["tags"]) >= {"rare", "synthetic", "reasoning", "retrieval", "hard-negatives"}
    assert meta["pretty_name"] == "rare-demo (RARE)"
    for heading in (
        "## How to load",
        "## Columns",
        "## How it was generated",
        "## Statistics",
        "## Sample record",
        "## Citation",
    ):
        assert heading in body
    assert "`hard_negatives` | list[string] |" in body
    assert "Teacher model: `teacher-test`" in body and "rare_hf-reasoning-v1" in body
    assert "| questions | 20 | 0 | 0 | 20 |" in body and "2503.23513" in body and "2504.20595" in body
    config = json.loads(hub.file("tester/rare-demo", RUN_CONFIG_FILENAME))
    assert config["model"] == "teacher-test" and config["params"]["num_neg"] == 3
    assert config["prompts"]["reasoning"]["version"] == "rare_hf-reasoning-v1"
    assert "base_url" not in json.dumps(config)
    assert len(hub.state.repos["tester/rare-demo"].commits) == 2  # data, then card + config


def test_no_license_unless_given(hub, built) -> None:
    ds, summary = built
    rare_hf.push_to_hub(ds, "tester/no-license", summary=summary)
    meta, _ = card_of(hub, "tester/no-license")
    assert "license" not in meta


def test_second_split_keeps_the_first_and_the_card(hub, built) -> None:
    ds, summary = built
    rare_hf.push_to_hub(ds.select(range(15)), "tester/two-splits", summary=summary, license="mit")
    rare_hf.push_to_hub(ds.select(range(15, 20)), "tester/two-splits", split="test", summary=summary)
    back = datasets.load_dataset("tester/two-splits", download_mode="force_redownload")
    assert {k: len(v) for k, v in back.items()} == {"train": 15, "test": 5}
    meta, body = card_of(hub, "tester/two-splits")
    assert [s["split"] for s in meta["configs"][0]["data_files"]] == ["train", "test"]
    assert meta["license"] == "mit" and body.count("## How to load") == 1
    # The card counts every split in the repo, not only the one pushed last.
    assert "- Rows: 20 (train 15, test 5)" in body
    assert meta["size_categories"] == ["n<1K"]


def test_human_edited_card_keeps_its_text(hub, built) -> None:
    ds, summary = built
    rare_hf.push_to_hub(ds, "tester/edited", summary=summary)
    card = DatasetCard.load("tester/edited", repo_type="dataset")
    card.text = (
        "# Our clinical reasoning set\n\nCurated by the cardiology team. Contact: team@example.org\n\n" + card.text
    )
    card.data.license = "apache-2.0"
    card.push_to_hub("tester/edited", repo_type="dataset")
    rare_hf.push_to_hub(ds.select(range(10)), "tester/edited", summary=summary)
    meta, body = card_of(hub, "tester/edited")
    assert body.lstrip().startswith("# Our clinical reasoning set")
    assert "Curated by the cardiology team." in body and body.count("rare_hf:begin") == 1
    assert "- Rows: 10" in body and meta["license"] == "apache-2.0"
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 10


def test_dataset_dict_and_private(hub, built) -> None:
    ds, summary = built
    dd = datasets.DatasetDict({"train": ds.select(range(16)), "validation": ds.select(range(16, 20))})
    rare_hf.push_to_hub(dd, "tester/dict", private=True, summary=summary)
    assert hub.state.repos["tester/dict"].private
    back = datasets.load_dataset("tester/dict", download_mode="force_redownload")
    assert {k: len(v) for k, v in back.items()} == {"train": 16, "validation": 4}
    with pytest.raises(ValueError, match="split= applies to a Dataset"):
        rare_hf.push_to_hub(dd, "tester/dict", split="train")
    assert HfApi().repo_info("tester/dict", repo_type="dataset").private


def test_cli_pushes_and_a_failed_push_keeps_the_data(hub, teacher, tmp_path, cli) -> None:
    from test_pipeline import _cli

    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().to_json(str(src), lines=True)
    env = {"K": "EMPTY", "HF_TOKEN": "hf_local_test_token", "RARE_HF_CACHE": str(tmp_path / "cache")}
    args = [str(src), "--model", "m", "--base-url", teacher.url, "--api-key-env", "K", "--limit", "8"]
    card_flags = ["--license", "cc-by-4.0", "--pretty-name", "Cardio RARE", "--language", "en,zh"]
    ok = cli(*args, "--output", str(tmp_path / "out"), "--push-to-hub", "tester/from-cli", *card_flags, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Pushed to" in ok.stdout
    meta, _ = card_of(hub, "tester/from-cli")
    assert meta["license"] == "cc-by-4.0" and meta["pretty_name"] == "Cardio RARE" and meta["language"] == ["en", "zh"]
    assert datasets.load_dataset("tester/from-cli", split="train", download_mode="force_redownload").num_rows == 8
    assert json.loads(hub.file("tester/from-cli", RUN_CONFIG_FILENAME))["summary"]["rows_out"] == 8
    out2, dead_hub = tmp_path / "out 2", {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "1"}
    dead = _cli(  # a subprocess: huggingface_hub reads HF_ENDPOINT when it is imported
        *args, "--output", str(out2), "--push-to-hub", "tester/x", "--private", *card_flags, env=env | dead_hub
    )
    assert dead.returncode == 1 and (out2 / "dataset").exists()
    # The retry repeats every publishing option (before: a python -c line without private, license or title).
    retry = shlex.split(dead.stderr.split("retry only the push with: ")[1].strip())
    assert retry == ["rare-hf", "push", str(out2), "tester/x", "--private", *card_flags]
    pushed = cli(*retry[1:], env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert hub.state.repos["tester/x"].private
    meta, body = card_of(hub, "tester/x")
    assert meta["license"] == "cc-by-4.0" and meta["pretty_name"] == "Cardio RARE" and meta["language"] == ["en", "zh"]
    assert json.loads(hub.file("tester/x", RUN_CONFIG_FILENAME))["summary"]["rows_out"] == 8


def test_the_card_shows_figures_uploaded_beside_it(hub, built) -> None:
    ds, summary = built
    rare_hf.push_to_hub(ds, "tester/figures", summary=summary)
    _, body = card_of(hub, "tester/figures")
    figures = ["question_words", "negatives_per_row", "negative_vs_positive_score", "positive_position"]
    for name in figures:
        assert f"(plots/{name}.png)" in body
        assert hub.file("tester/figures", f"plots/{name}.png").startswith(b"\x89PNG")
    assert "teacher_accuracy" not in body  # no gold answers in this run: no accuracy figure


_NO_MATPLOTLIB = """
import sys; sys.modules["matplotlib"] = None  # as on a machine without the plot extra
import datasets, rare_hf
ds = datasets.Dataset.from_dict({"text": ["a"], "question": ["q words"], "hard_negatives": [["n"]]})
print(rare_hf.hub.plots.available(), rare_hf.push_to_hub(ds, "tester/no-figures"))
"""


def test_without_the_plot_extra_the_card_keeps_its_tables(hub) -> None:
    result = subprocess.run([sys.executable, "-c", _NO_MATPLOTLIB], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False ")
    _, body = card_of(hub, "tester/no-figures")
    assert "## Statistics" in body and "## Figures" not in body and "plots/" not in body


def test_the_card_says_what_was_dropped_what_it_cost_and_when_it_is_placeholder_data(teacher, make_llm) -> None:
    from rare_hf.hub import build_card

    docs = rare_hf.load_sample_documents().select(range(8))
    docs = docs.map(lambda r, i: {"text": "" if i < 2 else r["text"]}, with_indices=True)  # 2 rows skipped
    llm = make_llm(price_per_million=(0.15, 0.6))
    ds, summary = rare_hf.build_rare_dataset(docs, llm, show_progress=False, return_summary=True)
    body = build_card(DatasetCard(""), ds, num_rows=len(ds), repo_id="me/rare", summary=summary).content
    # Before: "2 rows that failed a step dropped" beside a table showing failed 0, with no reason.
    assert "2 rows dropped because a step failed or skipped them (questions skipped 2" in body
    usage = summary.usage()
    assert f"- Cost of the data: ${usage['data_usd']:.4f} (the last run paid ${usage['usd']:.4f};" in body
    # Made with the offline teacher through the Python API, not --demo: still marked as placeholder data.
    assert "> **Placeholder data.**" in body
    real = ds.map(lambda r: {"question": "Which dose?", "reasoning": "Because."})
    real_body = build_card(DatasetCard(""), real, num_rows=len(real), repo_id="me/rare", summary=summary).content
    assert "Placeholder data" not in real_body

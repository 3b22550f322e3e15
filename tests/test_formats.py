"""Training formats: each format's column contract, the held-out evaluation set, the CLI and the Hub configs.
Built from real runs against the local teacher over HTTP; trained on by scripts/check_trainer_formats.py."""

from __future__ import annotations

import re
import shlex

import datasets
import pytest
import yaml

import rare_hf
from rare_hf.io.formats import FORMATS
from rare_hf.testing import LocalTeacher

RETRIEVAL = ["triples", "sentence-transformers", "sentence-transformers-scores", "flagembedding"]


@pytest.fixture
def mined(teacher: LocalTeacher, make_llm) -> datasets.Dataset:
    docs = rare_hf.load_sample_documents()
    return rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "hard_negatives"], show_progress=False)


@pytest.fixture
def graded(teacher: LocalTeacher, make_llm) -> datasets.Dataset:
    """Reasoning with gold answers: row i is right from attempt i % 3 on, so rows 1, 2 (mod 3) have rejects."""
    docs = rare_hf.load_sample_documents().select(range(9))
    ds = rare_hf.build_rare_dataset(docs, make_llm(), steps=["questions", "hard_negatives"], show_progress=False)
    ds = ds.add_column("gold", ["B"] * len(ds))
    order = {q: i for i, q in enumerate(ds["question"])}

    def responder(request: dict) -> str:
        user = request["messages"][1]["content"]
        i = next(i for q, i in order.items() if q in user)
        attempt = request.get("seed", 0)
        answer = "B" if attempt >= i % 3 else "A"
        return f"<think>Row {i} attempt {attempt} reasons.</think><answer>{answer}</answer>"

    teacher.responder = responder
    return rare_hf.add_reasoning(ds, make_llm(), answer_key="gold", show_progress=False)


def query_of(row: dict) -> str:
    return f"{row['scenario']}\n{row['question']}"


def test_sentence_transformers_n_tuples_are_plain_strings_in_loss_order(mined) -> None:
    st = rare_hf.to_sentence_transformers(mined)
    assert st.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert all(f == datasets.Value("string") for f in st.features.values())
    full = [r for r in mined if len(r["hard_negatives"]) >= 3]
    assert len(st) == len(full) >= 18
    for out, src in zip(st, full):
        assert out["anchor"] == query_of(src) and out["positive"] == src["text"]
        assert [out[f"negative_{j}"] for j in (1, 2, 3)] == src["hard_negatives"][:3]
    scored = rare_hf.export(mined, "sentence-transformers-scores")
    assert scored.column_names[-1] == "label"
    for out, src in zip(scored, full):
        expected = [src["hard_negatives_positive_score"], *src["hard_negatives_scores"]]
        assert out["label"] == pytest.approx(expected) and out["label"][0] >= out["label"][1]
    one = rare_hf.to_sentence_transformers(mined, num_negatives=1, include_scenario=False)
    assert one.column_names == ["anchor", "positive", "negative"] and one[0]["anchor"] == mined[0]["question"]


def test_flagembedding_and_tevatron_records(mined) -> None:
    bge = rare_hf.export(mined, "bge")
    assert bge.column_names == ["query", "pos", "neg", "pos_scores", "neg_scores", "prompt"]
    row, src = bge[0], mined[0]
    assert row["query"] == query_of(src) and row["pos"] == [src["text"]] and row["neg"] == src["hard_negatives"]
    assert row["neg_scores"] == pytest.approx(src["hard_negatives_scores"])
    assert row["pos_scores"] == pytest.approx([src["hard_negatives_positive_score"]])
    assert row["prompt"].startswith("Represent this question")
    assert rare_hf.to_flag_embedding(mined, prompt="Q: ")[0]["prompt"] == "Q: "
    triples = rare_hf.export(mined, "tevatron")
    assert triples["query_id"] == [f"{d}-0" for d in mined["doc_id"]]
    assert triples[3]["negative_passages"][0]["docid"] == mined[3]["hard_negatives_ids"][0]


def test_reasoning_formats_rebuild_the_teachers_prompt(graded) -> None:
    kept = [r for r in graded if r["reasoning"] is not None]
    messages = rare_hf.export(graded, "messages")
    pc = rare_hf.export(graded, "prompt-completion")
    assert pc.column_names == ["prompt", "completion"] and len(pc) == len(messages) == len(kept) == 9
    for m, p, src in zip(messages, pc, kept):
        assert p["prompt"] == m["messages"][:2] == rare_hf.reasoning_messages_for_row(src)
        assert p["completion"] == m["messages"][2:] and p["completion"][0]["role"] == "assistant"
        assert p["completion"][0]["content"] == rare_hf.io.reasoning_formats.assistant_target(
            src["reasoning"], src["answer"]
        )


def test_preference_pairs_and_kto_rows_come_from_rejection_sampling(graded) -> None:
    rejected = graded["reasoning_rejected"]
    assert [len(r) for r in rejected] == [i % 3 for i in range(9)]  # wrong until attempt i % 3
    assert all(x["answer"] == "A" for r in rejected for x in r)
    pairs = rare_hf.to_preference(graded)
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and len(pairs) == 9  # 0+1+2 per three rows
    for pair in pairs:
        assert "<answer>\nB\n</answer>" in pair["chosen"][0]["content"]
        assert "<answer>\nA\n</answer>" in pair["rejected"][0]["content"]
    first = graded[2]
    assert pairs[1]["prompt"] == rare_hf.reasoning_messages_for_row(first)
    assert [p["rejected"][0]["content"].split("</think>")[0] for p in pairs.select([1, 2])] == [
        "<think>\nRow 2 attempt 0 reasons.\n",
        "<think>\nRow 2 attempt 1 reasons.\n",
    ]
    kto = rare_hf.export(graded, "kto")
    assert kto.column_names == ["prompt", "completion", "label"]
    assert (kto["label"].count(True), kto["label"].count(False)) == (9, 9)


def test_preference_without_gold_says_how_to_get_it(mined, teacher, make_llm) -> None:
    teacher.responder = lambda r: "<think>Fine.</think><answer>B</answer>"
    ds = rare_hf.add_reasoning(mined.select(range(3)), make_llm(), show_progress=False)
    with pytest.raises(ValueError, match=r"reasoning_rejected: no reply was rejected.*answer_key="):
        rare_hf.to_preference(ds)
    with pytest.raises(ValueError, match="unknown format 'dpoo'; choose from messages, prompt-completion"):
        rare_hf.export(ds, "dpoo")


def test_held_out_documents_never_reach_training(teacher: LocalTeacher, make_llm) -> None:
    docs = rare_hf.load_sample_documents()
    ds = rare_hf.build_rare_dataset(
        docs, make_llm(), num_questions=2, steps=["questions", "hard_negatives"], show_progress=False
    )
    splits, records = rare_hf.io.formats.export_all(ds, RETRIEVAL, eval_fraction=0.2, seed=3)
    held = set(splits["test"]["doc_id"])
    assert held == rare_hf.held_out_documents(ds["doc_id"], 0.2, seed=3) and 1 <= len(held) <= 10
    assert len(splits["test"]) == 2 * len(held)  # a document goes whole: both its questions
    assert set(splits["train"]["doc_id"]).isdisjoint(held)
    triples = records["triples"]
    seen = {p["docid"] for r in triples for p in r["positive_passages"] + r["negative_passages"]}
    assert seen and seen.isdisjoint(held)
    texts = {t: d for d, t in zip(ds["doc_id"], ds["text"])}
    for name in ("sentence-transformers", "sentence-transformers-scores"):
        for row in records[name]:
            shown = [row["positive"], *(v for k, v in row.items() if k.startswith("negative"))]
            assert {texts[t] for t in shown}.isdisjoint(held)
    bge = records["flagembedding"]
    assert {texts[t] for r in bge for t in r["pos"] + r["neg"]}.isdisjoint(held)
    beir = records["beir"]
    assert sorted(beir["queries"]["_id"]) == sorted(f"{d}-{k}" for d in held for k in (0, 1))
    assert set(beir["qrels"]["corpus-id"]) == held and set(beir["qrels"]["query-id"]) == set(beir["queries"]["_id"])
    assert sorted(beir["corpus"]["_id"]) == sorted(set(ds["doc_id"]))  # retrieval from the whole corpus
    corpus = dict(zip(beir["corpus"]["_id"], beir["corpus"]["text"]))
    assert all(corpus[d] == t for d, t in zip(ds["doc_id"], ds["text"]))
    # The choice is per document: rows dropped elsewhere do not move it; another seed does.
    assert set(rare_hf.split_for_eval(ds.select(range(0, 40, 3)), 0.2, seed=3)["test"]["doc_id"]) <= held
    assert rare_hf.held_out_documents(ds["doc_id"], 0.2, seed=4) != held
    with pytest.raises(ValueError, match="eval_fraction must be between 0 and 1"):
        rare_hf.split_for_eval(ds, 1.0)


def test_mining_can_leave_the_held_out_documents_out(mined) -> None:
    held = rare_hf.held_out_documents(mined["doc_id"], 0.3, seed=0)
    plain = rare_hf.split_for_eval(mined, 0.3)["train"]
    assert any(len(n) < 3 for n in plain["hard_negatives"])  # mined over everything: rows lose negatives
    out, summary = rare_hf.add_hard_negatives(
        mined, exclude_ids=held, overwrite=True, show_progress=False, return_summary=True
    )
    assert all(len(n) == 3 and held.isdisjoint(i) for n, i in zip(out["hard_negatives"], out["hard_negatives_ids"]))
    assert summary.stats["dropped_candidates"]["excluded (exclude_ids)"] > 0
    train = rare_hf.split_for_eval(out, 0.3)["train"]
    assert len(rare_hf.to_sentence_transformers(train)) == len(train) == 20 - len(held)


def test_reasoning_exports_keep_the_negatives_the_teacher_saw(graded) -> None:
    splits, records = rare_hf.io.formats.export_all(graded, ["messages", "triples"], eval_fraction=0.3, seed=0)
    held = set(splits["test"]["doc_id"])
    kept = [r for r in graded if r["doc_id"] not in held]
    assert [m[:2] for m in records["messages"]["messages"]] == [rare_hf.reasoning_messages_for_row(r) for r in kept]
    cut = rare_hf.split_for_eval(graded, 0.3, seed=0)["train"]
    changed = [r for r, k in zip(cut, kept) if len(r["hard_negatives"]) < len(k["hard_negatives"])]
    assert changed  # some training row had a held-out document among its negatives
    with pytest.raises(ValueError, match="the negatives changed after the reasoning step"):
        rare_hf.to_sft(datasets.Dataset.from_list(changed))


def test_cli_writes_every_format_and_lists_them(teacher: LocalTeacher, tmp_path, cli) -> None:

    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().to_json(str(src), lines=True)
    env = {"K": "EMPTY", "RARE_HF_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf")}
    base = [str(src), "--model", "m", "--base-url", teacher.url, "--api-key-env", "K"]
    out = tmp_path / "out"
    done = cli(*base, "--format", "st,bge,prompt-completion", "--eval-fraction", "0.25", "--output", str(out), env=env)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "beir",
        "dataset",
        "flagembedding.jsonl",
        "flagembedding.parquet",
        "prompt-completion.jsonl",
        "prompt-completion.parquet",
        "sentence-transformers.jsonl",
        "sentence-transformers.parquet",
        "summary.json",
    ]
    held = rare_hf.held_out_documents(rare_hf.load_sample_documents()["doc_id"], 0.25)
    qrels = (out / "beir" / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and {q.split("\t")[1] for q in qrels[1:]} == held
    queries = datasets.load_dataset("json", data_files=str(out / "beir" / "queries.jsonl"), split="train")
    assert sorted(queries["_id"]) == sorted(line.split("\t")[0] for line in qrels[1:])
    assert len(datasets.Dataset.from_parquet(str(out / "prompt-completion.parquet"))) == 20 - len(held)
    # Held out before mining: every training row keeps its three negatives.
    assert len(datasets.Dataset.from_parquet(str(out / "sentence-transformers.parquet"))) == 20 - len(held)
    bad = cli(*base, "--steps", "questions,negatives", "--format", "preference", "--output", str(tmp_path / "o2"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --format preference needs the reasoning step; add it to --steps."
    ]
    unknown = cli(*base, "--format", "st,parquet", "--output", str(tmp_path / "o3"))
    assert "error: --format: unknown format(s) ['parquet']; choose from messages," in unknown.stderr
    shown = cli("--help").stdout
    listed = re.findall(r"^  (\S+) {2,}", shown.split("formats (--format")[1], re.M)
    assert listed == [f.name for f in FORMATS]


def test_hub_gets_a_config_per_format_and_the_card_trains_on_each(hub, mined) -> None:
    repo = "tester/formats"
    held = rare_hf.held_out_documents(mined["doc_id"], 0.2, seed=1)
    mined = rare_hf.add_hard_negatives(mined, exclude_ids=held, overwrite=True, show_progress=False)
    rare_hf.push_to_hub(mined, repo, formats=["st", "flagembedding"], eval_fraction=0.2, seed=1)
    again = lambda config, split: datasets.load_dataset(repo, config, split=split, download_mode="force_redownload")  # noqa: E731
    st = again("sentence-transformers", "train")
    assert st.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    splits, records = rare_hf.io.formats.export_all(mined, ["st", "flagembedding"], eval_fraction=0.2, seed=1)
    assert st["anchor"] == records["sentence-transformers"]["anchor"]
    assert again("flagembedding", "train")["neg"] == records["flagembedding"]["neg"]
    assert again("beir-qrels", "test")["query-id"] == records["beir"]["qrels"]["query-id"]
    assert again("beir-corpus", "test").num_rows == 20
    full = datasets.load_dataset(repo, download_mode="force_redownload")
    assert {k: v.num_rows for k, v in full.items()} == {"train": 20 - len(held), "test": len(held)}
    text = hub.file(repo, "README.md").decode()
    _, front, body = text.split("---\n", 2)
    configs = {c["config_name"]: c for c in yaml.safe_load(front)["configs"]}
    assert set(configs) == {
        "default",
        "sentence-transformers",
        "flagembedding",
        "beir-corpus",
        "beir-queries",
        "beir-qrels",
    }
    assert "## Training formats" in body
    assert f'train = load_dataset("{repo}", "sentence-transformers", split="train")' in body
    assert "losses.MultipleNegativesRankingLoss(model)" in body and "InformationRetrievalEvaluator(" in body


def test_a_failed_push_retries_with_its_formats(hub, teacher, tmp_path, cli) -> None:
    from test_pipeline import _cli

    src = tmp_path / "docs.jsonl"
    rare_hf.load_sample_documents().select(range(10)).to_json(str(src), lines=True)
    env = {"K": "EMPTY", "HF_TOKEN": "hf_local_test_token", "RARE_HF_CACHE": str(tmp_path / "c")}
    args = [str(src), "--model", "m", "--base-url", teacher.url, "--api-key-env", "K", "--output", str(tmp_path / "o")]
    dead_hub = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "1"}
    flags = ["--format", "st", "--eval-fraction", "0.2", "--seed", "5"]
    dead = _cli(*args, "--push-to-hub", "tester/retry-formats", *flags, env=env | dead_hub)
    assert dead.returncode == 1
    retry = shlex.split(dead.stderr.split("retry only the push with: ")[1].strip())
    assert retry == ["rare-hf", "push", str(tmp_path / "o"), "tester/retry-formats", *flags]
    assert cli(*retry[1:], env=env).returncode == 0  # in this process: the session's Hub is up
    st = datasets.load_dataset("tester/retry-formats", "sentence-transformers", split="train")
    held = set(datasets.load_dataset("tester/retry-formats", "beir-qrels", split="test")["corpus-id"])
    assert held == rare_hf.held_out_documents(rare_hf.load_sample_documents()["doc_id"][:10], 0.2, seed=5)
    # The pushed config is the local export: every training document (a row short of negatives is left out).
    local = datasets.load_dataset("parquet", data_files=str(tmp_path / "o" / "sentence-transformers.parquet"))
    assert st.to_list() == local["train"].to_list() and 10 - len(held) - 1 <= len(st) <= 10 - len(held)

"""The semantic false-negative guard over real HTTP: rewritten twins that pass every lexical guard are caught by an
embedding model, replaced, counted per row, relabelled as positives on request, and resumed from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, hashed_embedding, word_overlap

TOPICS = 40


def twin_corpus(seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Per topic a positive, its rewritten twin (60 % of its words in another surface form "b…", shuffled: same
    meaning, few shared words) and four documents on neighbouring topics. The question uses the positive's
    topical words. Words are "a<concept>" or "b<concept>": an embedding model that reads concepts sees the twin."""
    rng = np.random.default_rng(seed)
    common = np.array([str(k) for k in range(2000)])
    zipf = 1 / np.arange(1, 2001)
    zipf /= zipf.sum()
    rows: dict[str, list[str]] = {"doc_id": [], "text": [], "question": []}
    corpus = []
    for t in range(TOPICS):
        topic = np.array([str(2000 + t * 30 + k) for k in range(30)])
        words = np.where(rng.random(150) < 0.4, rng.choice(topic, 150), rng.choice(common, 150, p=zipf))
        positive = " ".join("a" + w for w in words)
        forms = np.where(rng.random(150) < 0.6, "b", "a")
        twin = " ".join(f + w for f, w in zip(forms, rng.permutation(words)))
        rows["doc_id"].append(f"d{t}")
        rows["text"].append(positive)
        rows["question"].append(" ".join("a" + w for w in rng.choice(words[np.isin(words, topic)], 6)))
        corpus += [{"doc_id": f"d{t}", "text": positive}, {"doc_id": f"twin{t}", "text": twin}]
        for j in range(4):
            near = np.array([str(2000 + ((t + 1 + j) % TOPICS) * 30 + k) for k in range(30)])
            draw = rng.random(150)
            mix = np.where(
                draw < 0.15,
                rng.choice(topic, 150),
                np.where(draw < 0.55, rng.choice(near, 150), rng.choice(common, 150)),
            )
            corpus.append({"doc_id": f"o{t}-{j}", "text": " ".join("a" + w for w in mix)})
    return datasets.Dataset.from_dict(rows), datasets.Dataset.from_list(corpus)


def concepts(text: str) -> str:
    return " ".join(w[1:] for w in text.split())


def by_concept(texts: list[str]) -> list[list[float]]:
    """An embedding model that reads meaning: both surface forms of a concept are one word to it."""
    return [hashed_embedding(concepts(t)) for t in texts]


def rerank_by_concept(query: str, documents: list[str]) -> list[float]:
    """A cross-encoder that reads meaning: the share of the question's concepts each document holds."""
    return word_overlap(concepts(query), [concepts(d) for d in documents])


def twins_served(out: datasets.Dataset) -> int:
    """Rows served their own positive's twin as a negative."""
    return sum(f"twin{doc[1:]}" in (ids or []) for doc, ids in zip(out["doc_id"], out["hard_negatives_ids"]))


@pytest.fixture
def concept_server():
    with LocalTeacher(embed=by_concept, rerank=rerank_by_concept) as server:
        yield server


def mine(ds, corpus, **kwargs):
    return rare_hf.add_hard_negatives(ds, corpus=corpus, show_progress=False, return_summary=True, **kwargs)


def test_twins_that_pass_the_lexical_guards_are_replaced(concept_server: LocalTeacher, tmp_path: Path) -> None:
    ds, corpus = twin_corpus()
    lexical, _ = mine(ds, corpus)
    served = twins_served(lexical)
    assert served >= 5  # the lexical guards (defaults, IDF cosine included) serve these twins as negatives
    embedder = rare_hf.Embedder("concepts", base_url=concept_server.url, cache_dir=tmp_path / "cache")
    out, summary = mine(ds, corpus, embedder=embedder)
    assert twins_served(out) == 0
    assert [len(n) for n in out["hard_negatives"]] == [3] * TOPICS  # each twin was replaced by the next candidate
    semantic = [row["semantic"] for row in out["hard_negatives_dropped"]]
    assert sum(semantic) == summary.stats["dropped_candidates"]["similar to the positive (embeddings)"] == served
    assert [row["positive"] for row in out["hard_negatives_dropped"]] == [1] * TOPICS
    # Negatives that were not twins stay where they were: the guard only replaces.
    for doc, before, after in zip(out["doc_id"], lexical["hard_negatives_ids"], out["hard_negatives_ids"]):
        kept = [i for i in before if i != f"twin{doc[1:]}"]
        assert after[: len(kept)] == kept
    # Only positives and served candidates were embedded, each once: not the corpus.
    embedded = [t for r in concept_server.embedding_requests for t in r["input"]]
    assert len(embedded) == len(set(embedded)) < 0.7 * len(corpus)
    assert 0 < summary.params["semantic_threshold_used"] < 1
    assert summary.usage["requests"] == len(concept_server.embedding_requests)
    # A re-run answers every embedding from the cache: nothing is sent, the rows are the same.
    concept_server.reset()
    again, summary = mine(ds, corpus, embedder=embedder)
    assert concept_server.embedding_requests == [] and summary.usage["cached"] == len(embedded)
    assert again["hard_negatives_ids"] == out["hard_negatives_ids"]
    embedder.close()


def test_relabelled_twins_become_extra_positives_in_every_export(concept_server: LocalTeacher) -> None:
    ds, corpus = twin_corpus()
    embedder = rare_hf.Embedder("concepts", base_url=concept_server.url, cache_dir=False, max_retries=2)
    concept_server.random_faults = [(0.3, Reply.error(429, retry_after=0.01))]  # a quota on the way
    out, summary = mine(ds, corpus, embedder=embedder, false_negatives="positive")
    embedder.close()
    relabelled = out["hard_negatives_positives_ids"]
    assert all(ids == [f"twin{t}"] or ids == [] for t, ids in enumerate(relabelled))
    assert sum(map(len, relabelled)) == summary.stats["dropped_candidates"]["similar to the positive (embeddings)"]
    row = next(t for t, ids in enumerate(relabelled) if ids)
    twin_text = out[row]["hard_negatives_positives"][0]
    assert twin_text == corpus[6 * row + 1]["text"]  # six documents a topic: the positive, its twin, four others
    triples = rare_hf.to_retrieval_triples(out)
    assert [p["docid"] for p in triples[row]["positive_passages"]] == [f"d{row}", f"twin{row}"]
    bge = rare_hf.to_flag_embedding(out)
    assert bge[row]["pos"] == [out[row]["text"], twin_text] and len(bge[row]["pos_scores"]) == 2
    st = rare_hf.to_sentence_transformers(out)
    assert len(st) == TOPICS + sum(map(len, relabelled))
    assert st.filter(lambda r: r["positive"] == twin_text)[0]["anchor"] == out[row]["question"]
    qrels = rare_hf.to_beir(out)["qrels"]
    assert sorted(qrels.filter(lambda r: r["query-id"] == f"d{row}-0")["corpus-id"]) == [f"d{row}", f"twin{row}"]
    # A held-out document never stays a training row's extra positive (here: every row names d0 as one).
    held_out = rare_hf.held_out_documents(out["doc_id"], 0.5, seed=1)
    first = sorted(held_out)[0]
    key = "hard_negatives_positives"
    named = out.map(lambda r: {f"{key}_ids": [first, *r[f"{key}_ids"]], key: ["held-out text", *r[key]]})
    train = rare_hf.split_for_eval(named, 0.5, seed=1)["train"]
    assert len(train) == TOPICS - len(held_out)
    assert train["hard_negatives_positives_ids"] == [
        out[int(d[1:])]["hard_negatives_positives_ids"] for d in train["doc_id"]
    ]


def test_a_positive_that_cannot_be_embedded_fails_its_row(tmp_path: Path) -> None:
    ds, corpus = twin_corpus()
    broken = ds[5]["text"]

    def embed(texts: list[str]) -> list[list[float]]:
        return [[float("nan")] * 128 if t == broken else hashed_embedding(t) for t in texts]

    with LocalTeacher(embed=embed) as server:
        embedder = rare_hf.Embedder("e", base_url=server.url, cache_dir=False, batch_size=1, max_retries=0)
        out, summary = mine(ds, corpus, embedder=embedder)
        embedder.close()
    errors = out["hard_negatives_error"]
    assert [i for i, e in enumerate(errors) if e] == [5]
    assert errors[5].startswith("embedding: the positive was not embedded: embedding: malformed")
    assert summary.failed == 1 and out["hard_negatives"][5] is None
    assert all(len(n) == 3 for i, n in enumerate(out["hard_negatives"]) if i != 5)


def test_the_guards_settings_are_checked_before_anything_runs(concept_server: LocalTeacher) -> None:
    ds, corpus = twin_corpus()
    with pytest.raises(ValueError, match="false_negatives='positive' needs a guard that finds them"):
        mine(ds, corpus, false_negatives="positive")
    with pytest.raises(ValueError, match="max_semantic_similarity must be 'auto', a number in"):
        mine(ds, corpus, embedder=rare_hf.Embedder("e", base_url=concept_server.url), max_semantic_similarity=2)
    with pytest.raises(TypeError, match="embedder must be a rare_hf.Embedder"):
        mine(ds, corpus, embedder="all-MiniLM-L6-v2")
    assert concept_server.embedding_requests == []


def test_dense_and_hybrid_mining_over_http(concept_server: LocalTeacher, tmp_path: Path) -> None:
    ds, corpus = twin_corpus()
    embedder = rare_hf.Embedder("concepts", base_url=concept_server.url, cache_dir=tmp_path / "cache")
    mined = {m: mine(ds, corpus, embedder=embedder, method=m, num_neg=5)[0] for m in ("bm25", "dense", "hybrid")}
    text_of = dict(zip(corpus["doc_id"], corpus["text"]))
    for row in mined["dense"]:
        # Scores are the question's cosine with each negative, best first, and the positive's own is beside them.
        question = embedder.embed([row["question"]], kind="query")[0]
        vectors = embedder.embed([text_of[i] for i in row["hard_negatives_ids"]] + [row["text"]])
        np.testing.assert_allclose(row["hard_negatives_scores"], vectors[:-1] @ question, atol=1e-5)
        assert row["hard_negatives_positive_score"] == pytest.approx(float(vectors[-1] @ question), abs=1e-5)
        assert row["hard_negatives_scores"] == sorted(row["hard_negatives_scores"], reverse=True)
        if row["hard_negatives_positive_score"] > 0:  # positive-aware (a positive at or below 0 gives no margin)
            assert max(row["hard_negatives_scores"]) <= 0.95 * row["hard_negatives_positive_score"]
        assert row["doc_id"] not in row["hard_negatives_ids"] and len(row["hard_negatives_ids"]) == 5
    lists = {m: out["hard_negatives_ids"] for m, out in mined.items()}
    assert lists["dense"] != lists["bm25"]  # another retriever, other candidates
    from_both = sum(bool(set(h) & set(b)) and bool(set(h) & set(d)) for h, b, d in zip(*lists.values()))
    assert from_both >= TOPICS // 2  # hybrid rows draw on both lists
    assert twins_served(mined["dense"]) == twins_served(mined["hybrid"]) == 0


def test_the_corpus_vectors_are_stored_beside_a_saved_index(concept_server: LocalTeacher, tmp_path: Path) -> None:
    ds, corpus = twin_corpus()
    folder = tmp_path / "index"
    rare_hf.BM25Index.build(corpus["text"], doc_ids=corpus["doc_id"], show_progress=False).save(folder)
    embedder = rare_hf.Embedder("concepts", base_url=concept_server.url, cache_dir=False, batch_size=64)
    first, summary = mine(ds, str(folder), embedder=embedder, method="dense")
    stored = list(folder.glob("dense-*.npy"))
    assert len(stored) == 1 and summary.params["dense_vectors"] == str(stored[0])
    sent = [t for r in concept_server.embedding_requests for t in r["input"]]
    assert set(corpus["text"]) <= set(sent)  # the first run embeds the corpus...
    concept_server.reset()
    again, summary = mine(ds, str(folder), embedder=embedder, method="dense")
    sent = [t for r in concept_server.embedding_requests for t in r["input"]]
    assert sorted(sent) == sorted(set(ds["question"]))  # ...the next only its questions (no cache here)
    assert again["hard_negatives_ids"] == first["hard_negatives_ids"]
    other = rare_hf.Embedder("another-model", base_url=concept_server.url, cache_dir=False, batch_size=64)
    mine(ds, str(folder), embedder=other, method="hybrid")
    assert len(list(folder.glob("dense-*.npy"))) == 2  # named by the model as well as the corpus
    with pytest.raises(ValueError, match="method='dense' needs an embedder"):
        mine(ds, str(folder), method="dense")
    with pytest.raises(ValueError, match="method must be one of 'bm25', 'dense', 'hybrid'"):
        mine(ds, str(folder), embedder=other, method="splade")


def test_reciprocal_rank_fusion_orders_the_union() -> None:
    from rare_hf.retrieval.dense import reciprocal_rank_fusion

    docs, scores = reciprocal_rank_fusion(np.array([[5, 7, 9, -1]]), np.array([[7, 3, 5, 8]]), k=60)
    assert docs.tolist() == [[7, 5, 3, 9, 8, -1, -1, -1]]  # 7: ranks 2 and 1; 5: ranks 1 and 3; then singles
    assert scores[0, 0] == pytest.approx(1 / 62 + 1 / 61) and scores[0, -1] == 0


def test_the_cli_mines_with_an_embedding_model(cli, tmp_path: Path) -> None:
    env = {"RARE_HF_CACHE": str(tmp_path / "cache")}
    flags = ["--demo", "--steps", "questions,negatives", "--embedding-model", "demo-embed", "--mining", "hybrid",
             "--rerank-model", "demo-rerank"]  # fmt: skip
    dry = cli(*flags, "--dry-run", env=env)
    assert dry.returncode == 0 and "embeddings (demo-embed): at most 20 documents in 1 request," in dry.stdout
    done = cli(*flags, "--false-negatives", "positive", "--format", "triples", "--output", str(tmp_path / "o"), env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    step = next(s for s in summary["steps"] if s["step"] == "hard_negatives")
    assert step["params"]["mining"] == "hybrid" and step["params"]["false_negatives"] == "positive"
    assert step["usage"]["requests"] >= 1 and step["params"]["corpus_not_embedded"] == 0
    assert step["params"]["reranker"]["model"] == "demo-rerank" and step["params"]["max_rerank_ratio"] == 0.95
    ds = datasets.load_from_disk(str(tmp_path / "o" / "dataset"))
    assert {"hard_negatives_dropped", "hard_negatives_positives"} <= set(ds.column_names)
    run = rare_hf.RunSummary.from_dict(summary)
    card = str(
        rare_hf.hub.build_card(rare_hf.hub.DatasetCard("---\n---\n"), ds, num_rows=20, repo_id="me/x", summary=run)
    )
    assert "- Candidates the guards removed: positive or exact duplicate 20" in card
    assert "- Mining: hybrid; embedding model `demo-embed`, semantic cut-off" in card and "are extra positives" in card
    assert "- Reranker `demo-rerank`: candidates scoring at least 0.95 of their positive are extra positives" in card
    on_ray = cli(*flags, "--ray", "--output", str(tmp_path / "r"), env=env)
    assert on_ray.returncode == 2 and "do not run on Ray yet" in on_ray.stderr
    wrong = cli("--demo", "--mining", "dense", "--output", str(tmp_path / "x"), env=env)
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(
        "--mining dense needs --embedding-model (an embedding model on an OpenAI-compatible endpoint)."
    )


def test_a_reranker_guard_replaces_twins_and_can_relabel_them(concept_server: LocalTeacher, tmp_path: Path) -> None:
    ds, corpus = twin_corpus()
    lexical, _ = mine(ds, corpus)
    served = twins_served(lexical)
    reranker = rare_hf.Reranker("concepts", base_url=concept_server.url, cache_dir=tmp_path / "cache")
    out, summary = mine(ds, corpus, reranker=reranker, false_negatives="positive")
    assert served >= 5 and twins_served(out) == 0
    assert [len(n) for n in out["hard_negatives"]] == [3] * TOPICS
    caught = [row["reranker"] for row in out["hard_negatives_dropped"]]
    assert sum(caught) == summary.stats["dropped_candidates"]["answers as well as the positive (reranker)"] >= served
    for doc, before, relabelled in zip(
        out["doc_id"], lexical["hard_negatives_ids"], out["hard_negatives_positives_ids"]
    ):
        assert f"twin{doc[1:]}" in relabelled or f"twin{doc[1:]}" not in before  # every twin served before is caught
        assert doc not in relabelled
    # One request per row, more only for rows that lost candidates (a look at their replacements, which holds
    # only the new ones: the positive's and earlier scores come from the cache); the question, positive first.
    first = concept_server.rerank_requests[:TOPICS]
    assert TOPICS + sum(1 for c in caught if c) <= len(concept_server.rerank_requests) <= TOPICS + sum(caught)
    assert all(len(r["documents"]) <= 3 for r in concept_server.rerank_requests[TOPICS:])
    assert sorted(r["query"] for r in first) == sorted(ds["question"])
    assert all(r["documents"][0] in ds["text"] for r in first)
    assert summary.params["max_rerank_ratio"] == 0.95 and summary.usage["requests"] == len(
        concept_server.rerank_requests
    )
    concept_server.reset()
    again, _ = mine(ds, corpus, reranker=reranker, false_negatives="positive")  # every score from the cache
    assert concept_server.rerank_requests == [] and again["hard_negatives_ids"] == out["hard_negatives_ids"]
    reranker.close()


def test_a_reranker_that_fails_serves_nothing_unjudged(concept_server: LocalTeacher) -> None:
    ds, corpus = twin_corpus()
    reranker = rare_hf.Reranker("concepts", base_url=concept_server.url, cache_dir=False, max_retries=0)
    concept_server.fail_next(Reply.error(500))  # the first row's judgement
    out, summary = mine(ds.select(range(1)), corpus, reranker=reranker, max_score_ratio=None)
    reranker.close()
    assert out[0]["hard_negatives_dropped"]["not_reranked"] == 3  # its first picks went unjudged: not served
    assert len(out[0]["hard_negatives"]) == 3 and summary.stats["dropped_candidates"]["could not be reranked"] == 3

"""rare_hf.Embedder over real HTTP: batching, order, prefixes, retries, the per-text cache and resume, the dry run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rare_hf
from rare_hf.testing import LocalTeacher, Reply, hashed_embedding


def texts(n: int) -> list[str]:
    return [f"document {i} about topic {i % 7} and term{i * 13 % 101}" for i in range(n)]


def make(teacher: LocalTeacher, tmp_path: Path, **kwargs) -> rare_hf.Embedder:
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    kwargs.setdefault("timeout", 5.0)
    return rare_hf.Embedder(kwargs.pop("model", "embed-test"), base_url=teacher.url, **kwargs)


def sent_inputs(teacher: LocalTeacher) -> list[str]:
    return [text for request in teacher.embedding_requests for text in request["input"]]


def test_batches_keep_order_send_repeats_once_and_put_the_prefix(teacher: LocalTeacher, tmp_path: Path) -> None:
    given = texts(40) + texts(5)  # five repeats
    with make(teacher, tmp_path, batch_size=16, document_prefix="passage: ", max_chars=30) as embedder:
        vectors = embedder.embed(given)
        queries = embedder.embed(["which topic?"], kind="query")
    assert vectors.shape == (45, 128) and vectors.dtype == np.float32
    assert len(teacher.embedding_requests) == 3 + 1  # 40 distinct texts in batches of 16, then the query
    assert sorted(sent_inputs(teacher)[:40]) == sorted(("passage: " + t)[:30] for t in texts(40))
    expected = np.array([hashed_embedding(("passage: " + t)[:30]) for t in given], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)  # row i is text i's vector, unit length
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[40:], vectors[:5])
    assert sent_inputs(teacher)[-1] == "which topic?"  # no query prefix was given
    np.testing.assert_allclose(queries[0], hashed_embedding("which topic?"), atol=1e-6)
    assert embedder.usage.requests == 4 and embedder.usage.prompt_tokens == teacher.prompt_tokens


def test_429s_and_malformed_replies_are_retried(teacher: LocalTeacher, tmp_path: Path) -> None:
    with make(teacher, tmp_path, cache_dir=False, batch_size=8) as clean:
        expected = clean.embed(texts(20))
    teacher.reset()
    teacher.fail_next(Reply.error(429, retry_after=0.05), Reply.malformed_body(), Reply.error(503))
    with make(teacher, tmp_path, cache_dir=False, batch_size=8) as embedder:
        vectors = embedder.embed(texts(20))
    np.testing.assert_array_equal(vectors, expected)
    assert len(teacher.embedding_requests) == 3 + 3 and embedder.usage.retries == 3


def test_a_failed_batch_fails_its_texts_and_a_rerun_sends_only_them(tmp_path: Path) -> None:
    given = texts(40)
    broken = {"on": True}  # the server returns NaN for one text: its batch's reply is unusable, every attempt

    def embed(batch: list[str]) -> list[list[float]]:
        return [[float("nan")] * 128 if broken["on"] and t == given[3] else hashed_embedding(t) for t in batch]

    with LocalTeacher(embed=embed) as teacher:
        with make(teacher, tmp_path, batch_size=16, max_retries=1) as embedder:
            with pytest.raises(rare_hf.LLMRequestError, match=r"^16 of 40 texts were not embedded: embedding: malf"):
                embedder.embed(given)
            vectors, errors = embedder.run_sync(embedder.aembed(given))  # the failures, row by row
        assert [e is not None for e in errors] == [True] * 16 + [False] * 24
        assert np.isnan(vectors[:16]).all() and np.isfinite(vectors[16:]).all()
        assert len(sent_inputs(teacher)) == 2 * 16 + 24 + 2 * 16  # the second call re-sends only the failed batch
        teacher.reset()
        broken["on"] = False
        with make(teacher, tmp_path, batch_size=16) as again:  # a new process on the same cache
            assert again.estimate(given) == rare_hf.EmbeddingEstimate(
                40, 24, 1, again.estimate(given[:16]).tokens, None
            )
            resumed = again.embed(given)
        assert sorted(sent_inputs(teacher)) == sorted(given[:16]) and again.usage.cached == 24
    np.testing.assert_allclose(resumed, [hashed_embedding(t) for t in given], atol=1e-6)


def test_the_dry_run_estimates_and_sends_nothing(teacher: LocalTeacher, tmp_path: Path) -> None:
    with make(teacher, tmp_path, batch_size=10, price_per_million=0.02) as embedder:
        before = embedder.estimate(texts(25))
        assert (before.texts, before.cached, before.requests) == (25, 0, 3) and before.tokens > 0
        assert before.usd == pytest.approx(before.tokens * 0.02 / 1e6)
        with embedder.cache_only(), pytest.raises(rare_hf.LLMRequestError, match="not in the response cache"):
            embedder.embed(texts(25))
        assert teacher.embedding_requests == []
        embedder.embed(texts(10))
        after = embedder.estimate(texts(25))
    assert (after.cached, after.requests) == (10, 2)


def test_bad_input_is_one_line_before_any_request(teacher: LocalTeacher, tmp_path: Path) -> None:
    with make(teacher, tmp_path) as embedder:
        with pytest.raises(ValueError, match=r"^texts\[1\]: expected a non-empty string, got ' '\.$"):
            embedder.embed(["fine", " "])
        with pytest.raises(TypeError, match="got one string"):
            embedder.embed("one string")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kind: expected 'query' or 'document'"):
            embedder.embed(["x"], kind="passage")  # type: ignore[arg-type]
    with pytest.raises(rare_hf.LLMConfigError, match="batch_size must be >= 1"):
        make(teacher, tmp_path, batch_size=0)
    assert teacher.http_request_count == 0


def test_dimensions_and_an_unknown_model(tmp_path: Path) -> None:
    with LocalTeacher(models=["embed-test"]) as teacher:
        with make(teacher, tmp_path, dimensions=32) as embedder:
            assert embedder.embed(["short vectors"]).shape == (1, 32)
        with make(teacher, tmp_path, model="no-such-model") as wrong:
            with pytest.raises(rare_hf.LLMFatalError, match="no-such-model"):
                wrong.embed(texts(3))


def test_the_reranker_scores_in_order_caches_pairs_and_retries(teacher: LocalTeacher, tmp_path: Path) -> None:
    documents = ["a cat sat on the mat", "quantum chromodynamics", "the cat and the mat"]
    teacher.fail_next(Reply.error(429, retry_after=0.05))
    with rare_hf.Reranker("rerank-test", base_url=teacher.url, cache_dir=tmp_path / "c", timeout=5) as reranker:
        scores = reranker.rerank("cat on a mat", documents)
        assert scores[1] < min(scores[0], scores[2]) and reranker.usage.retries == 1
        teacher.reset()
        again = reranker.rerank("cat on a mat", [documents[2], "a new one about cats", documents[0]])
    assert again[0] == scores[2] and again[2] == scores[0]
    assert [r["documents"] for r in teacher.rerank_requests] == [["a new one about cats"]]  # only the new pair
    with pytest.raises(ValueError, match=r"documents\[0\]: expected a non-empty string"):
        rare_hf.Reranker("r", base_url=teacher.url, cache_dir=False).rerank("q", [""])

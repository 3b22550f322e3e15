"""Hard negatives that are really negative: overlapping chunks, short documents, unscorable positives,
rows short of negatives — on real bm25s indexes."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

import rare_hf

CHUNK = 120


def chunked_corpus(stride: int, num_docs: int = 100, words_per_doc: int = 420, seed: int = 0) -> datasets.Dataset:
    """Documents of Zipf-distributed common words plus their own topical words, cut into chunks of 120
    words every ``stride`` words (66: chunks overlap by 45 %; 120: no overlap). Each chunk's question
    uses its topical words, so its sibling chunks are its most BM25-like neighbours."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"term{k}" for k in range(3000)])
    zipf = 1 / np.arange(1, 3001)
    zipf /= zipf.sum()
    rows: dict[str, list] = {"text": [], "source": [], "start": [], "question": []}
    for d in range(num_docs):
        topic = rng.choice(vocab[300:], 40, replace=False)
        words = np.where(
            rng.random(words_per_doc) < 0.35, rng.choice(topic, words_per_doc), rng.choice(vocab, words_per_doc, p=zipf)
        )
        for start in range(0, words_per_doc - CHUNK + 1, stride):
            chunk = words[start : start + CHUNK]
            rows["text"].append(" ".join(chunk))
            rows["source"].append(d)
            rows["start"].append(start)
            rows["question"].append(" ".join(rng.choice(chunk[np.isin(chunk, topic)], 6)) + "?")
    return datasets.Dataset.from_dict(rows)


def sibling_hits(ds: datasets.Dataset, **kwargs) -> tuple[int, rare_hf.StepSummary]:
    """Rows whose negatives include a chunk overlapping their own positive."""
    out, summary = rare_hf.add_hard_negatives(ds, num_neg=3, show_progress=False, return_summary=True, **kwargs)
    where = {t: (s, st) for t, s, st in zip(ds["text"], ds["source"], ds["start"])}
    hits = sum(
        any(where[n][0] == row["source"] and abs(where[n][1] - row["start"]) < CHUNK for n in row["hard_negatives"])
        for row in out
        if row["hard_negatives"]
    )
    return hits, summary


@pytest.mark.parametrize("stride", [66, 72])  # chunks overlapping by 45 % and by 40 %
def test_overlapping_sibling_chunks_are_never_negatives(stride: int) -> None:
    ds = chunked_corpus(stride)
    before, _ = sibling_hits(ds, exclude_shared_passages=False, max_similarity=None)
    idf_only, _ = sibling_hits(ds, exclude_shared_passages=False)
    after, summary = sibling_hits(ds)
    assert before >= 0.2 * len(ds)  # the term-overlap and score filters let most siblings through
    # A sibling shares its topic's rare terms: the IDF cosine alone catches most of them too.
    assert idf_only <= 0.1 * before
    assert after <= 0.01 * len(ds)
    dropped = summary.stats["dropped_candidates"]
    assert dropped["shares a passage with the positive"] + dropped["similar to the positive (IDF cosine)"] >= before
    assert summary.failed == 0 and summary.stats["short"] == 0


def test_no_different_document_is_dropped_for_sharing_a_passage() -> None:
    ds = chunked_corpus(stride=CHUNK)  # chunks of different documents, and of one document without overlap
    _, summary = rare_hf.add_hard_negatives(ds, num_neg=3, show_progress=False, return_summary=True)
    assert summary.stats["dropped_candidates"].get("shares a passage with the positive", 0) == 0


def test_a_short_document_is_not_penalised_for_being_short() -> None:
    positive = " ".join(f"word{i}" for i in range(200)) + " warfarin bleeding"
    short = "warfarin bleeding word3 word7 word9"  # all its terms are in the long positive
    ds = datasets.Dataset.from_dict(
        {"text": [positive, short, "unrelated gardening notes about roses"], "question": ["warfarin bleeding?"] * 3}
    )
    out = rare_hf.add_hard_negatives(ds, num_neg=1, max_score_ratio=None, show_progress=False)
    assert out[0]["hard_negatives"] == [short]  # containment would have dropped it: 5 of 5 terms shared


def test_a_positive_scoring_zero_still_gets_negatives() -> None:
    ds = datasets.Dataset.from_dict(
        {
            "text": ["Roses need pruning in spring.", "Warfarin raises bleeding risk.", "Heparin bridges warfarin."],
            "question": ["How is warfarin bleeding managed?", "x", "y"],
        }
    )
    out, summary = rare_hf.add_hard_negatives(ds, num_neg=2, show_progress=False, return_summary=True)
    assert out[0]["hard_negatives_positive_score"] == 0
    assert sorted(out[0]["hard_negatives"]) == sorted(ds["text"][1:]) and out[0]["hard_negatives_error"] is None


def test_rows_short_of_negatives_fail_below_min_neg_and_are_counted() -> None:
    texts = ["warfarin bleeding risk", "warfarin dosing in renal failure", "roses and tulips", "tulips in spring"]
    ds = datasets.Dataset.from_dict({"text": texts, "question": ["warfarin?", "warfarin?", "roses?", "spring?"]})
    out, summary = rare_hf.add_hard_negatives(
        ds, num_neg=3, max_score_ratio=None, show_progress=False, return_summary=True
    )
    errors = out["hard_negatives_error"]
    assert all(e is None for e in errors[:2]) and summary.stats["short"] == 4  # 1 of 3 found: kept, counted
    strict, strict_summary = rare_hf.add_hard_negatives(
        ds, num_neg=3, min_neg=2, max_score_ratio=None, show_progress=False, return_summary=True
    )
    assert strict["hard_negatives_error"][0].startswith("short: 1 of 3 negatives found (min_neg=2)")
    assert strict["hard_negatives"][0] is None and strict_summary.failed == 4 and strict_summary.ok == 0
    assert strict_summary.failure_reasons == {"short": 4}
    assert len(rare_hf.to_retrieval_triples(strict)) == 0  # never exported without negatives


def test_doc_id_zero_is_an_id_not_a_missing_one() -> None:
    ds = datasets.Dataset.from_dict(
        {"doc_id": [0, 1], "text": ["warfarin bleeding risk", "warfarin dosing"], "question": ["warfarin?"] * 2}
    )
    out = rare_hf.add_hard_negatives(ds, num_neg=1, max_score_ratio=None, show_progress=False)
    triples = rare_hf.to_retrieval_triples(out)
    assert [t["positive_passages"][0]["docid"] for t in triples] == ["0", "1"]


CHINESE = [
    "华法林是一种口服抗凝药，会增加出血风险，需要定期监测国际标准化比值。",
    "肝素通过增强抗凝血酶的作用来抗凝，常用于华法林起效前的桥接治疗。",
    "房颤患者的卒中风险可以用评分来估计，评分高的患者通常需要抗凝治疗。",
    "肾功能不全时，许多抗凝药需要减量，否则出血风险会明显升高。",
    "阿司匹林抑制血小板聚集，和抗凝药合用时出血风险更高。",
    "胰岛素剂量应根据血糖监测结果调整，夜间低血糖需要特别注意。",
    "哮喘急性发作时常用吸入型支气管扩张剂，严重时需要全身使用糖皮质激素。",
    "脓毒症早期需要积极补液，并在一小时内使用广谱抗生素。",
]
CHINESE_QUESTIONS = [
    "华法林治疗期间如何降低出血风险？",
    "桥接治疗中肝素起什么作用？",
    "房颤患者何时需要抗凝治疗？",
    "肾功能不全的患者如何调整抗凝药剂量？",
    "阿司匹林与抗凝药合用有什么风险？",
    "如何根据血糖调整胰岛素剂量？",
    "哮喘急性发作如何处理？",
    "脓毒症早期的治疗重点是什么？",
]


def test_a_chinese_corpus_is_mined_with_character_bigrams() -> None:
    ds = datasets.Dataset.from_dict({"text": CHINESE, "question": CHINESE_QUESTIONS})
    out, summary = rare_hf.add_hard_negatives(
        ds, num_neg=2, max_score_ratio=None, show_progress=False, return_summary=True
    )
    assert summary.params["language"] == "cjk-bigrams" and summary.skipped == 0  # before: all 8 skipped
    assert all(n for n in out["hard_negatives"][:5])  # the five anticoagulation documents find negatives
    assert set(summary.failure_reasons) <= {"short"}  # a topic alone in the corpus has no negative
    assert all(row["text"] not in (row["hard_negatives"] or []) for row in out)
    # The anticoagulation documents find each other, not the diabetes or asthma ones.
    assert CHINESE[3] in out[0]["hard_negatives"] or CHINESE[4] in out[0]["hard_negatives"]
    assert CHINESE[5] not in out[0]["hard_negatives"] and CHINESE[6] not in out[0]["hard_negatives"]
    named = rare_hf.add_hard_negatives(ds, num_neg=2, max_score_ratio=None, language="zh", show_progress=False)
    assert named["hard_negatives"] == out["hard_negatives"]


def test_the_card_shows_a_complete_row_as_its_sample() -> None:
    ds = datasets.Dataset.from_dict(
        {
            "text": ["first document", "second document"],
            "hard_negatives": [[], ["a negative"]],
            "hard_negatives_error": [None, None],
        }
    )
    card = rare_hf.hub.build_card(rare_hf.hub.DatasetCard("---\n---\n"), ds, num_rows=2, repo_id="me/x")
    sample = str(card).split("## Sample record", 1)[1]
    assert '"text": "second document"' in sample and "first document" not in sample


def test_a_rewritten_twin_passes_the_jaccard_guard_but_not_the_idf_cosine() -> None:
    positive = (
        "The Commodore Amiga 500 was a home computer released in 1987 with a Motorola 68000 processor, the OCS "
        "chipset with Agnus, Denise and Paula, and 512 kilobytes of chip memory for graphics and sound."
    )
    twin = (  # the same facts re-edited: distinct-word Jaccard 0.26, no shared run of words
        "Amiga 500: Commodore's 1987 machine for the home. Inside, a Motorola 68000 CPU; custom chips Agnus, "
        "Paula and Denise (OCS); half a megabyte of chip RAM shared by video and audio hardware."
    )
    others = [
        "The home computer market of the late 1980s was crowded with machines from many makers.",
        "Graphics and sound chips in home computers were often custom designs shared between video and audio.",
        "A processor with 32-bit registers and a 16-bit bus powered several workstations and home computers.",
        "Chip memory and fast memory differ in which custom chips can reach them during a frame of video.",
        "The chipset of a computer decides how graphics and sound are produced and what the processor must do.",
    ]
    question = (
        "Which processor and chipset produced graphics and sound on the home computer Commodore released in 1987?"
    )
    ds = datasets.Dataset.from_dict({"question": [question], "text": [positive]})
    corpus = [positive, twin, *others]
    kwargs = {"corpus": corpus, "num_neg": 3, "show_progress": False, "return_summary": True}
    before, _ = rare_hf.add_hard_negatives(ds, max_similarity=None, **kwargs)
    assert twin in before["hard_negatives"][0]  # today's guards: the twin is a "hard negative"
    after, summary = rare_hf.add_hard_negatives(ds, max_similarity=0.4, **kwargs)
    assert twin not in after["hard_negatives"][0] and len(after["hard_negatives"][0]) == 3
    assert summary.stats["dropped_candidates"]["similar to the positive (IDF cosine)"] == 1
    with pytest.raises(ValueError, match=r"max_similarity must be in \(0, 1\]"):
        rare_hf.add_hard_negatives(ds, max_similarity=1.5)

"""Your own prompts and the Chinese prompt set, over real HTTP: checked before any request, sent as given,
recorded per row and in the card, and rebuilt exactly for training."""

from __future__ import annotations

import json

import datasets
import pytest
from huggingface_hub import DatasetCard

import rare_hf
from rare_hf.hub import build_card
from rare_hf.prompts import QUESTION_PROMPT_ZH, REASONING_PROMPT_ZH
from rare_hf.testing import LocalTeacher

CUSTOM_QUESTIONS = rare_hf.Prompt(
    system="You write board-exam questions.",
    user='Write {num_questions} question(s) about this text:\n{document}\nReply as {{"hard_queries": [...]}}.',
)
CUSTOM_REASONING = rare_hf.Prompt(
    system="Answer like an attending physician.",
    user="Q: {question}\nContext: {scenario}\nSources:\n{documents}\nUse <think></think> then <answer></answer>.",
)
ZH_DOCS = [
    "华法林的剂量由国际标准化比值指导；维生素K的摄入、胺碘酮等相互作用药物以及CYP2C9基因变异都会改变维持治疗范围所需的剂量。",
    "根据对价原则，只有在交换中给予了有价值的东西时，承诺才可以强制执行；过去的对价和既有义务通常不算。",
    "饱和的松散砂土在地震等循环荷载下会失去强度而发生液化，除非地基经过加密或打桩，否则基础可能倾斜或下沉。",
]


@pytest.mark.parametrize(
    "prompt, message",
    [
        (
            rare_hf.Prompt(system="", user="About {documnet}: ask {num_questions}."),
            "unknown placeholder(s) ['documnet']",
        ),
        (rare_hf.Prompt(system="", user="Ask {num_questions} questions."), "missing ['document']"),
        (rare_hf.Prompt(system="", user="About {document}: {"), "not valid format syntax"),
    ],
)
def test_a_bad_prompt_is_a_one_line_error_before_any_request(teacher: LocalTeacher, make_llm, prompt, message) -> None:
    docs = datasets.Dataset.from_dict({"text": ["A document."]})
    with pytest.raises(ValueError, match="^prompt: ") as info:
        rare_hf.add_questions(docs, make_llm(), prompt=prompt, show_progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert teacher.http_request_count == 0


def test_custom_prompts_are_sent_recorded_and_rebuilt(teacher: LocalTeacher, make_llm) -> None:
    texts = rare_hf.load_sample_documents()["text"][:6]
    docs = datasets.Dataset.from_dict({"text": texts})
    out, summary = rare_hf.build_rare_dataset(
        docs,
        make_llm(),
        num_neg=2,
        question_kwargs={"prompt": CUSTOM_QUESTIONS},
        reasoning_kwargs={"prompt": CUSTOM_REASONING},
        show_progress=False,
        return_summary=True,
    )
    assert len(out) == 6
    first = teacher.requests[0]["messages"]
    assert first[0]["content"] == "You write board-exam questions." and first[1]["content"].startswith(
        "Write 1 question"
    )
    assert set(out["question_prompt_version"]) == {CUSTOM_QUESTIONS.version} and CUSTOM_QUESTIONS.version.startswith(
        "custom-"
    )
    assert set(out["reasoning_prompt_version"]) == {CUSTOM_REASONING.version}
    # The exact reasoning request is rebuilt from the row and the prompt, and to_sft trains on it.
    sent = [r["messages"] for r in teacher.requests if r["messages"][0]["content"] == CUSTOM_REASONING.system]
    rebuilt = [rare_hf.reasoning_messages_for_row(row, prompt=CUSTOM_REASONING) for row in out]
    assert rebuilt == sent
    sft = rare_hf.to_sft(out, prompt=CUSTOM_REASONING)
    assert [m["messages"][:2] for m in sft] == sent
    with pytest.raises(ValueError, match="custom prompt; pass it as prompt="):
        rare_hf.reasoning_messages_for_row(out[0])
    assert summary.prompt_versions == {"questions": CUSTOM_QUESTIONS.version, "reasoning": CUSTOM_REASONING.version}
    card = build_card(DatasetCard(""), out, num_rows=len(out), repo_id="me/rare", summary=summary).content
    assert CUSTOM_QUESTIONS.user in card and CUSTOM_REASONING.user in card and "board-exam" in card


def test_a_chinese_corpus_gets_the_chinese_prompts_end_to_end(teacher: LocalTeacher, make_llm) -> None:
    docs = datasets.Dataset.from_dict({"text": ZH_DOCS})
    llm = make_llm()
    asked = rare_hf.add_questions(docs, llm, show_progress=False)
    negatives = [[d for d in ZH_DOCS if d != text] for text in ZH_DOCS]  # three documents mine too few negatives
    out = rare_hf.add_reasoning(asked.add_column("hard_negatives", negatives), llm, show_progress=False)
    assert out["reasoning_error"] == [None] * 3 and out["question_error"] == [None] * 3
    questions = [r for r in teacher.requests if r["messages"][0]["content"] == QUESTION_PROMPT_ZH.system]
    reasoning = [r for r in teacher.requests if r["messages"][0]["content"] == REASONING_PROMPT_ZH.system]
    assert len(questions) == 3 and len(reasoning) == 3 and len(teacher.requests) == 6
    assert "下面是一篇专业领域的文档" in questions[0]["messages"][1]["content"]
    assert set(out["question_prompt_version"]) == {"rare_hf-questions-json-zh-v1"}
    assert set(out["reasoning_prompt_version"]) == {"rare_hf-reasoning-zh-v1"}
    # Built-in prompts are found from the row's version: no prompt= needed to rebuild or to train.
    assert [m["messages"][:2] for m in rare_hf.to_sft(out)] == [r["messages"] for r in reasoning]


def test_prompt_language_overrides_detection(teacher: LocalTeacher, make_llm) -> None:
    docs = datasets.Dataset.from_dict({"text": ZH_DOCS[:1]})
    out = rare_hf.add_questions(docs, make_llm(), prompt_language="en", show_progress=False)
    assert out["question_prompt_version"] == ["rare_hf-questions-json-v1"]
    with pytest.raises(ValueError, match="prompt_language: expected 'auto' or one of"):
        rare_hf.add_questions(docs, make_llm(), prompt_language="fr", show_progress=False)
    assert json.loads(json.dumps(teacher.requests[0]))["messages"][1]["content"].startswith("Below is a document")

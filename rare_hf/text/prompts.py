"""Every prompt rare_hf sends, kept as versioned data.

A prompt's ``version`` is written next to the data it produced; change the text, bump the version. The
builders below are the only way prompts are made, so a row can be rebuilt from its columns exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .prompt import Messages, Prompt
from .script import HAN_CHAR, share

__all__ = [
    "Prompt", "PromptTemplate", "PROMPT_SETS", "BUILT_IN", "resolve_prompt_language", "QUESTION_PROMPT",
    "QUESTION_REPAIR_PROMPT", "REASONING_PROMPT", "VERIFY_PROMPT", "JUDGE_PROMPT", "PROMPTS", "question_messages",
    "question_repair_messages", "reasoning_messages", "format_documents", "with_reference_answer",
]  # fmt: skip

PromptTemplate = Prompt  # the name before custom prompts


QUESTION_PROMPT = Prompt(
    name="questions",
    version="rare_hf-questions-v1",
    system=(
        "You write hard, realistic questions that test domain reasoning. You are precise, and you "
        "follow the requested output format exactly."
    ),
    user="""Below is a document from a specialised domain. Use it only as supporting evidence to write \
exactly {num_questions} question(s) that a capable practitioner of this domain could face in real work.

Each question comes with a scenario, and together they must:
- stand alone: make complete sense to someone who has never seen the document;
- never mention or allude to "the document", "the passage", "the text", "the article" or "the author";
- require reasoning: analysis, synthesis, diagnosis, comparison or a decision in the document's domain, \
where the document's knowledge helps but is not simply quoted;
- not be fact recall, a definition, or reading comprehension of the document;
- be concrete: the scenario gives the situation and its constraints; the question asks one clear thing.

<document>
{document}
</document>

You may think first. Then end your reply with a single JSON object in a ```json fenced block, in \
exactly this shape, with {num_questions} item(s) in the list:
```json
{{"hard_queries": [{{"scenario": "<the situation and its constraints>", "question": "<the question>"}}]}}
```""",
)

QUESTION_REPAIR_PROMPT = Prompt(
    name="questions-repair",
    version="rare_hf-questions-repair-v1",
    system="",
    user="""Your reply could not be used: {problem}
Reply again with only the JSON object, no other text, in exactly this shape with {num_questions} item(s):
{{"hard_queries": [{{"scenario": "...", "question": "..."}}]}}
Remember: standalone questions that never refer to a document, passage or text.""",
)

REASONING_PROMPT = Prompt(
    name="reasoning",
    version="rare_hf-reasoning-v1",
    system=(
        "You are a domain expert. You answer by reasoning over retrieved documents: you judge which "
        "documents are relevant, ground your reasoning in them, and say so when evidence is missing."
    ),
    user="""# Scenario
{scenario}

# Question
{question}

# Retrieved Documents
{documents}

# Instructions
1. Identify the essential problem the question asks you to solve.
2. Decide which retrieved documents help. Not all of them are relevant; some only look similar.
3. Think step by step, combining the relevant evidence with sound domain reasoning, and draft an answer.

Write your step-by-step reasoning inside <think></think>, then your final answer inside \
<answer></answer>.""",
)

QUESTION_PROMPT_ZH = Prompt(
    name="questions",
    version="rare_hf-questions-zh-v1",
    system="你负责编写考查领域推理能力的高难度、贴近实际的问题。你表述严谨，并严格遵守要求的输出格式。",
    user="""下面是一篇专业领域的文档。请仅把它当作辅助证据，编写恰好 {num_questions} 个该领域的资深从业者在实际工作中\
可能遇到的问题。

每个问题都附带一个情景，二者合在一起必须：
- 自成一体：没有读过这篇文档的人也能完全理解；
- 绝不提及或暗示“文档”“段落”“文本”“文章”或“作者”；
- 需要推理：在文档所属领域内进行分析、综合、诊断、比较或决策，文档中的知识有帮助，但不能直接照抄；
- 不是事实回忆、名词解释或对文档的阅读理解；
- 具体明确：情景给出处境及其约束条件，问题只问一件明确的事。

<document>
{document}
</document>

你可以先思考。然后在回复末尾给出一个放在 ```json 代码块中的 JSON 对象，形状必须与下面完全一致，列表中恰好有 \
{num_questions} 项，情景和问题用中文书写：
```json
{{"hard_queries": [{{"scenario": "<处境及其约束条件>", "question": "<问题>"}}]}}
```""",
)

QUESTION_REPAIR_PROMPT_ZH = Prompt(
    name="questions-repair",
    version="rare_hf-questions-repair-zh-v1",
    system="",
    user="""你的回复无法使用：{problem}
请重新回复，只给出 JSON 对象，不要有其他文字，形状与下面完全一致，包含 {num_questions} 项：
{{"hard_queries": [{{"scenario": "...", "question": "..."}}]}}
注意：问题必须自成一体，绝不能提及文档、段落或文本。""",
)

REASONING_PROMPT_ZH = Prompt(
    name="reasoning",
    version="rare_hf-reasoning-zh-v1",
    system="你是领域专家。你通过对检索到的文档进行推理来作答：判断哪些文档相关，以它们为依据进行推理，证据不足时如实说明。",
    user="""# 情景
{scenario}

# 问题
{question}

# 检索到的文档
{documents}

# 要求
1. 找出问题真正要你解决的核心问题。
2. 判断哪些检索到的文档有帮助。并非所有文档都相关，有些只是看起来相似。
3. 逐步思考，把相关证据与严谨的领域推理结合起来，得出答案。

把逐步推理写在 <think></think> 中，然后把最终答案写在 <answer></answer> 中。""",
)

VERIFY_PROMPT = Prompt(
    name="verify",
    version="rare_hf-verify-v1",
    system=(
        "You judge retrieval results strictly. A document answers a question only if, on its own, it gives "
        "what is needed to reach the answer; being on the same topic is not enough."
    ),
    user="""# Question
{question}

# Candidate documents
{documents}

Which of these documents, on its own, contains what is needed to answer the question? Usually none or few \
do. Think briefly if you need to, then end with a JSON object listing their numbers (an empty list if none \
does):
{{"answers": [2, 5]}}""",
)

JUDGE_PROMPT = Prompt(
    name="judge",
    version="rare_hf-judge-v1",
    system="You grade training data for retrieval-augmented reasoning, strictly and briefly.",
    user="""# Source document
{document}

# Question
{question}

# Distilled answer: {answer}
# Reference answer: {reference}

Score the question from 1 (bad) to 5 (good) on each criterion, with a one-sentence reason: standalone (clear \
without the document: no "the text", "the passage", "above"), needs_reasoning (it takes reasoning over the \
document, not looking up a phrase), answerable (the document holds what is needed to answer it), answer_agrees \
(the distilled answer agrees with the reference answer; null when either is "(none)"). Reply with JSON only:
{{"standalone": {{"score": 4, "reason": "..."}}, "needs_reasoning": {{"score": 2, "reason": "..."}}, \
"answerable": {{"score": 5, "reason": "..."}}, "answer_agrees": null}}""",
)

WRITTEN_NEGATIVES_PROMPT = Prompt(
    name="written-negatives",
    version="rare_hf-written-negatives-v1",
    system=(
        "You write realistic documents for training search engines. You are careful: the documents you are "
        "asked for must look relevant to a question without answering it."
    ),
    user="""# Scenario
{scenario}

# Question
{question}

# A document that does help answer it
<document>
{document}
</document>

Write {num_neg} new document(s), each 150 to 400 words, in the style of the domain's own texts (a manual, a \
guideline, a case report, a textbook section). Each must look relevant to the question: the same topic, \
entities and vocabulary. But none may answer it or give the facts needed to answer it: discuss a neighbouring \
situation, a different condition or population, or the background only. Do not copy sentences from the \
document above, and never mention the question. End your reply with a JSON object:
{{"documents": ["<document 1>"]}}""",
)

WRITTEN_NEGATIVES_PROMPT_ZH = Prompt(
    name="written-negatives",
    version="rare_hf-written-negatives-zh-v1",
    system="你为训练搜索引擎撰写逼真的文档。你很谨慎：要求你写的文档必须看起来与问题相关，但不能回答问题。",
    user="""# 情景
{scenario}

# 问题
{question}

# 一篇确实有助于回答该问题的文档
<document>
{document}
</document>

请写 {num_neg} 篇新文档，每篇 300 到 800 字，采用该领域文本的风格（手册、指南、病例报告、教科书章节）。每篇都必须\
看起来与问题相关：主题、实体和术语相同。但任何一篇都不能回答问题，也不能给出回答所需的事实：可以讨论相邻的情形、\
不同的条件或人群，或只谈背景。不要照抄上面文档中的句子，也不要提及这个问题。在回复末尾给出一个 JSON 对象：
{{"documents": ["<文档 1>"]}}""",
)


def _long(prompt: Prompt, instruction: str) -> Prompt:
    """The question prompt asking for long queries: one more instruction before the document."""
    return Prompt(
        name="questions-long",
        version=prompt.version.replace("questions", "questions-long"),
        system=prompt.system,
        user=prompt.user.replace("\n\n<document>", f"\n\n{instruction}\n\n<document>", 1),
    )


QUESTION_LONG_PROMPT = _long(
    QUESTION_PROMPT,
    "Write long queries: each scenario is a detailed account of 300 to 2,000 words (the case history, the "
    "data at hand, what has been tried, the constraints), as a practitioner writes when asking a colleague "
    "for help; the question then asks one clear thing about it.",
)
QUESTION_LONG_PROMPT_ZH = _long(
    QUESTION_PROMPT_ZH,
    "请写长查询：每个情景是一段 300 到 2000 字的详细叙述（案例经过、手头的数据、已经尝试过的做法、约束条件），"
    "就像从业者向同事求助时写的那样；问题只问其中一件明确的事。",
)


def _structured(prompt: Prompt, marker: str, tail: str) -> Prompt:
    """The question prompt for requests that carry the JSON schema: the reply's shape in words, from
    ``marker`` on, instead of a free-text example. The schema already fixes the shape, and a small model
    copies an example's ``<placeholders>`` into its answer (SmolLM2-135M did in 6 of 6 first replies)."""
    return Prompt(
        name=f"{prompt.name}-json",
        version=prompt.version.replace("questions", "questions-json", 1),
        system=prompt.system,
        user=prompt.user[: prompt.user.index(marker)] + tail,
    )


_JSON_TAIL = (
    'Reply with a JSON object. Its "reasoning" field says in one or two sentences which idea of the document the '
    'question will test. Its "hard_queries" field lists exactly {num_questions} item(s), each with a "scenario" (a '
    'concrete situation and its constraints, in full sentences) and a "question" (the one clear thing asked about it).'
)
_JSON_TAIL_ZH = (
    "请回复一个 JSON 对象。其中 “reasoning” 字段用一两句话说明问题要考查文档中的哪个观点。"
    "“hard_queries” 字段列出恰好 {num_questions} 项，每一项有 “scenario”"
    "（一个具体的处境及其约束条件，用完整的句子写出）和 “question”"
    "（针对该处境提出的一个明确的问题），情景和问题用中文书写。"
)
QUESTION_JSON_PROMPT = _structured(QUESTION_PROMPT, "You may think first.", _JSON_TAIL)
QUESTION_LONG_JSON_PROMPT = _structured(QUESTION_LONG_PROMPT, "You may think first.", _JSON_TAIL)
QUESTION_JSON_PROMPT_ZH = _structured(QUESTION_PROMPT_ZH, "你可以先思考。", _JSON_TAIL_ZH)
QUESTION_LONG_JSON_PROMPT_ZH = _structured(QUESTION_LONG_PROMPT_ZH, "你可以先思考。", _JSON_TAIL_ZH)

PROMPTS: dict[str, Prompt] = {p.name: p for p in (QUESTION_PROMPT, QUESTION_REPAIR_PROMPT, REASONING_PROMPT)}
PROMPT_SETS: dict[str, dict[str, Prompt]] = {
    "en": {
        **PROMPTS,
        **{p.name: p for p in (QUESTION_LONG_PROMPT, QUESTION_JSON_PROMPT, QUESTION_LONG_JSON_PROMPT)},
        "written-negatives": WRITTEN_NEGATIVES_PROMPT,
    },
    "zh": {
        p.name: p
        for p in (
            QUESTION_PROMPT_ZH,
            QUESTION_REPAIR_PROMPT_ZH,
            REASONING_PROMPT_ZH,
            QUESTION_LONG_PROMPT_ZH,
            QUESTION_JSON_PROMPT_ZH,
            QUESTION_LONG_JSON_PROMPT_ZH,
            WRITTEN_NEGATIVES_PROMPT_ZH,
        )  # fmt: skip
    },
}
BUILT_IN: dict[str, Prompt] = {
    **{p.version: p for prompts in PROMPT_SETS.values() for p in prompts.values()},
    VERIFY_PROMPT.version: VERIFY_PROMPT,
    JUDGE_PROMPT.version: JUDGE_PROMPT,
}  # type: ignore[misc]


_REFERENCE = {
    "en": 'Give every item of "hard_queries" a third field, "answer": the answer the document supports, as short '
    "as it can be (a number, a name, a term, or one sentence). It is kept apart as a reference answer: the "
    "question must not contain it.",
    "zh": "给 “hard_queries” 的每一项加第三个字段 “answer”：文档所支持的答案，"
    "尽量简短（一个数字、名称、术语或一句话）。它作为参考答案单独保存：问题中不能包含它。",
}


def with_reference_answer(prompt: Prompt, language: str = "en") -> Prompt:
    """The question prompt that also asks for each question's short reference answer (``add_questions(...,
    reference_answer=True)``): one instruction at the end, and its own version."""
    return Prompt(
        name=prompt.name,
        version=f"{prompt.version}+answer-v1",
        system=prompt.system,
        user=f"{prompt.user}\n\n{_REFERENCE[language]}",
    )


def resolve_prompt_language(language: str, texts: Sequence[Any]) -> str:
    """``"zh"`` or ``"en"``: as given, or with ``"auto"`` by the share of Han characters in a sample of ``texts``."""
    if language not in ("auto", *PROMPT_SETS):
        raise ValueError(f"prompt_language: expected 'auto' or one of {sorted(PROMPT_SETS)}, got {language!r}.")
    if language != "auto":
        return language
    return "zh" if share(texts, HAN_CHAR, sample=500) > 0.3 else "en"


def question_messages(document: str, num_questions: int = 1, prompt: Prompt = QUESTION_PROMPT) -> Messages:
    """The first-attempt request for ``num_questions`` questions about ``document``."""
    return prompt.render(document=document, num_questions=num_questions)


def question_repair_messages(
    first: Messages, reply: str, problem: str, num_questions: int = 1, prompt: Prompt = QUESTION_REPAIR_PROMPT
) -> Messages:
    """A follow-up turn that shows the teacher its unusable reply and asks for the JSON only."""
    repair = prompt.render(problem=problem, num_questions=num_questions)[1]
    return [*first, {"role": "assistant", "content": reply}, repair]


def format_documents(documents: list[str]) -> str:
    """Number and delimit documents so the teacher (and a student) can tell where each one ends."""
    return "\n\n".join(
        f'<document index="{i}">\n{doc.strip()}\n</document>' for i, doc in enumerate(documents, start=1)
    )


def reasoning_messages(
    question: str, scenario: str | None, documents: list[str], prompt: Prompt = REASONING_PROMPT
) -> Messages:
    """The distillation request: scenario, question, the numbered documents in their shown order."""
    return prompt.render(
        scenario=(scenario or "").strip() or "(none given)",
        question=question.strip(),
        documents=format_documents(documents),
    )

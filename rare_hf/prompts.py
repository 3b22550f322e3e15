"""Every prompt rare_hf sends, kept as versioned data.

A prompt's ``version`` is written next to the data it produced; change the text, bump the version. The
builders below are the only way prompts are made, so a row can be rebuilt from its columns exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "PromptTemplate",
    "QUESTION_PROMPT",
    "QUESTION_REPAIR_PROMPT",
    "REASONING_PROMPT",
    "PROMPTS",
    "question_messages",
    "question_repair_messages",
    "reasoning_messages",
    "format_documents",
]

Messages = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A system message and a user template with ``{field}`` slots."""

    name: str
    version: str
    system: str
    user: str

    def render(self, **fields: Any) -> Messages:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user.format(**fields)}]

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


QUESTION_PROMPT = PromptTemplate(
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

QUESTION_REPAIR_PROMPT = PromptTemplate(
    name="questions-repair",
    version="rare_hf-questions-repair-v1",
    system="",
    user="""Your reply could not be used: {problem}
Reply again with only the JSON object, no other text, in exactly this shape with {num_questions} item(s):
{{"hard_queries": [{{"scenario": "...", "question": "..."}}]}}
Remember: standalone questions that never refer to a document, passage or text.""",
)

REASONING_PROMPT = PromptTemplate(
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

PROMPTS: dict[str, PromptTemplate] = {p.name: p for p in (QUESTION_PROMPT, QUESTION_REPAIR_PROMPT, REASONING_PROMPT)}


def question_messages(document: str, num_questions: int = 1) -> Messages:
    """The first-attempt request for ``num_questions`` questions about ``document``."""
    return QUESTION_PROMPT.render(document=document, num_questions=num_questions)


def question_repair_messages(first: Messages, reply: str, problem: str, num_questions: int = 1) -> Messages:
    """A follow-up turn that shows the teacher its unusable reply and asks for the JSON only."""
    repair = QUESTION_REPAIR_PROMPT.render(problem=problem, num_questions=num_questions)[1]
    return [*first, {"role": "assistant", "content": reply}, repair]


def format_documents(documents: list[str]) -> str:
    """Number and delimit documents so the teacher (and a student) can tell where each one ends."""
    return "\n\n".join(
        f'<document index="{i}">\n{doc.strip()}\n</document>' for i, doc in enumerate(documents, start=1)
    )


def reasoning_messages(question: str, scenario: str | None, documents: list[str]) -> Messages:
    """The distillation request: scenario, question, the numbered documents in their shown order."""
    return REASONING_PROMPT.render(
        scenario=(scenario or "").strip() or "(none given)",
        question=question.strip(),
        documents=format_documents(documents),
    )

"""The offline demo teacher: deterministic placeholder replies to rare_hf's own prompts.

It exists so the whole pipeline runs with no model and no network (``rare-hf --demo``, tests, a user's CI).
Its questions and reasoning are built from the prompt's words and marked ``[placeholder …]``: never real data.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .text.script import HAN

__all__ = ["demo_responder", "DEMO_MODEL", "PLACEHOLDER_MARK"]

DEMO_MODEL = "rare-hf-demo-teacher"
PLACEHOLDER_MARK = "[placeholder "  # every field the demo teacher writes carries it

_WORD = re.compile(rf"[A-Za-z][A-Za-z-]{{4,}}|[{HAN}]{{2,4}}")  # Latin words, or short runs of Han characters


def demo_responder(request: dict[str, Any]) -> str:
    """A deterministic stand-in teacher that answers rare_hf's own prompts in the expected format.

    Its questions and reasoning are placeholders built from the prompt's words, not real model output:
    it exists so the whole pipeline can run offline (``--demo``, tests, a user's CI).
    """
    messages = request.get("messages", [])
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    digest = hashlib.sha1(prompt.encode()).hexdigest()[:6]
    if '{"documents": [' in prompt:  # add_written_negatives: a placeholder document on the same words
        return _demo_written(prompt, digest)
    if "# Reference answer:" in prompt:  # judge: every row passes
        agrees = None if "# Reference answer: (none)" in prompt else {"score": 4, "reason": "[placeholder] Agrees."}
        score = {"score": 4, "reason": "[placeholder] Acceptable."}
        verdict = {"standalone": score, "needs_reasoning": score, "answerable": score, "answer_agrees": agrees}
        return json.dumps(verdict)
    if "# Candidate documents" in prompt:  # verify_negatives: the demo finds no false negative
        return 'None of them alone answers it.\n{"answers": []}'
    if "<answer>" in prompt:  # every reasoning prompt asks for <think>/<answer>; question prompts for JSON
        return _demo_reasoning(prompt, digest)
    document = prompt.split("<document>")[-1].split("</document>")[0]
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(document)))[:60]
    count = _requested_count(prompt)
    queries = []
    for i in range(count):  # distinct questions per document, as the steps' near-duplicate check demands
        start = (10 + 3 * i + int(digest, 16)) % max(1, len(words) - 2)  # a resample picks other words
        topic = ", ".join(words[start : start + 3]) or f"the domain's trade-off {i + 1}"
        queries.append(
            {
                "scenario": f"[placeholder {digest}-{i}] A practitioner has to weigh {topic} against "
                f"{words[(17 + i) % max(len(words), 1)] if words else 'competing constraints'} "
                "before making a decision under real constraints.",
                "question": f"[placeholder {digest}-{i}] "
                + _DEMO_QUESTIONS[(i + int(digest, 16)) % len(_DEMO_QUESTIONS)].format(topic),
            }
        )
        if "reference answer" in prompt or "参考答案" in prompt:  # add_questions(reference_answer=True)
            queries[-1]["answer"] = f"[placeholder] {words[start] if words else 'it depends'}"
    return (
        "Reasoning about what a hard question needs {a set like {x, y}} before answering.\n"
        f"```json\n{json.dumps({'hard_queries': queries}, indent=2)}\n```"
    )


_DEMO_QUESTIONS = (
    "Which course of action best balances {}, and what trade-offs justify it?",
    "What would go wrong first if {} were ignored, and how would you notice?",
    "How would you convince a sceptical colleague to change the plan because of {}?",
    "Which single measurement would settle a dispute about {}, and why that one?",
)


def _demo_written(prompt: str, digest: str) -> str:
    question = prompt.split("# Question")[-1].split("#")[0] if "# Question" in prompt else prompt
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(question)))[:8] or ["the", "topic"]
    body = " ".join(
        f"Background note {n} [placeholder {digest}] on {', '.join(words)}: general context that a reader "
        "might look up first, without the specific facts any particular case would need."
        for n in range(4)
    )
    return "Writing a near-miss document.\n" + json.dumps({"documents": [body]})


def _requested_count(prompt: str) -> int:
    match = re.search(r"exactly (\d+) question|恰好 (\d+) 个", prompt)
    return int(match.group(1) or match.group(2)) if match else 1


def _demo_reasoning(prompt: str, digest: str) -> str:
    question = prompt.split("# Question", 1)[-1].strip().splitlines()[0:1]
    return (
        f"<think>[placeholder {digest}] The essential problem is: {' '.join(question)[:200]} "
        "I check each retrieved document for evidence that bears on it, set aside the ones that do not, "
        "and combine the relevant facts step by step.</think>\n"
        f"<answer>[placeholder {digest}] The course of action supported by the relevant documents.</answer>"
    )

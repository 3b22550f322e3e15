"""What the questions step asks the teacher to reply with: the JSON schema sent as ``response_format``, and the
prompts' own text a question must not repeat."""

from __future__ import annotations

from typing import Any

from ..text.prompts import Prompt

__all__ = ["response_format", "prompt_text", "KEPT_DOC"]

_QUESTION_ITEM = {
    "type": "object",
    "properties": {"scenario": {"type": "string"}, "question": {"type": "string"}},
    "required": ["scenario", "question"],
    "additionalProperties": False,
}
# Reasoning first, then the questions: a model constrained to the schema still thinks before it writes them.
# (No minItems/maxItems: OpenAI's strict mode refuses them; the prompt asks for the count, the parser checks it.)
_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "hard_queries",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "hard_queries": {"type": "array", "items": _QUESTION_ITEM}},
            "required": ["reasoning", "hard_queries"],
            "additionalProperties": False,
        },
    },
}


def prompt_text(*prompts: Prompt) -> str:
    """The prompts' own text with the document slot left empty: what a question must not repeat."""
    return "\n".join(p.system + "\n" + p.user.replace("{document}", "") for p in prompts)


KEPT_DOC = "Share of the document's characters shown, after max_doc_chars, max_doc_tokens and the context window."


def response_format(reference_answer: bool = False) -> dict[str, Any]:
    """The schema of a reply; with ``reference_answer`` every item also has an ``answer``."""
    if not reference_answer:
        return _RESPONSE_FORMAT
    item = {**_QUESTION_ITEM, "required": ["scenario", "question", "answer"]}
    item["properties"] = {**_QUESTION_ITEM["properties"], "answer": {"type": "string"}}
    schema = _RESPONSE_FORMAT["json_schema"]["schema"]
    queries = {"type": "array", "items": item}
    schema = {**schema, "properties": {**schema["properties"], "hard_queries": queries}}
    return {"type": "json_schema", "json_schema": {**_RESPONSE_FORMAT["json_schema"], "schema": schema}}

"""A prompt as data: a system message and a user template with named placeholders, under a version that is
written next to every row it produced."""

from __future__ import annotations

import dataclasses
import hashlib
import string
from typing import Any

__all__ = ["Prompt", "Messages"]

Messages = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A prompt: a system message and a user template with named ``{placeholders}`` (``str.format``
    syntax: write literal braces as ``{{`` and ``}}``).

    Args:
        system: The system message (may be empty).
        user: The user message template.
        version: Written next to every row it produced; default: ``custom-`` and a hash of the text, so a
            changed text never passes for the old one.
        name: What the prompt is for (``"questions"``, ``"reasoning"``, ...), for the card.

    Example:
        >>> prompt = rare_hf.Prompt(system="You write exam questions.",
        ...                         user="Write {num_questions} question(s) about:\n{document}\nAnswer in JSON ...")
        >>> ds = rare_hf.add_questions(docs, llm, prompt=prompt)
    """

    system: str
    user: str
    version: str | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.version is None:
            digest = hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()[:12]
            object.__setattr__(self, "version", f"custom-{digest}")

    def placeholders(self) -> set[str]:
        return {
            field for text in (self.system, self.user) for _, field, _, _ in string.Formatter().parse(text) if field
        }

    def check(self, argument: str, allowed: set[str], required: set[str]) -> None:
        """Raise a one-line ``ValueError`` naming ``argument`` when a placeholder is unknown or missing."""
        try:
            found = self.placeholders()
        except ValueError as exc:  # an unmatched brace
            raise ValueError(
                f"{argument}: the template is not valid format syntax ({exc}); write literal braces as {{{{ }}}}."
            ) from None
        unknown, missing = found - allowed, required - found
        problems = [f"unknown placeholder(s) {sorted(unknown)}"] if unknown else []
        problems += [f"missing {sorted(missing)}"] if missing else []
        if problems:
            rule = f"it may use {sorted(allowed)} and must use {sorted(required)}"
            raise ValueError(f"{argument}: {'; '.join(problems)}; {rule}.")

    def render(self, **fields: Any) -> Messages:
        return [
            {"role": "system", "content": self.system.format(**fields)},
            {"role": "user", "content": self.user.format(**fields)},
        ]

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)

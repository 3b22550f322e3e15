"""The sections of the dataset card that describe the data: its columns, how it was generated (teacher,
parameters, prompts), its statistics (per step, with totals and dollars) and a sample record."""

from __future__ import annotations

import json
import statistics as stats
from typing import Any

import datasets

from ..demo import DEMO_MODEL, PLACEHOLDER_MARK
from ..steps.pipeline import ALL_STEPS, RunSummary, describe_price
from ..steps.summary import StepSummary
from ..text.prompts import BUILT_IN, PROMPTS, Prompt
from ..utils.datasets import column_values

RUN_CONFIG_FILENAME = "rare_hf_run.json"
_INPUT_DOCS = {
    "text": "The source document (the positive for its question), from the input.",
    "doc_id": "Stable id of the source document (a hash of its text unless the input had one).",
}


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _dropped(summary: RunSummary) -> str:
    """How many rows were dropped, and why: a row is dropped when a step failed it or skipped it."""
    if not summary.dropped_failed:
        return "no row was dropped"
    reasons = [f"{s.step} {kind} {n:,}" for s in summary.steps for kind, n in s.failure_reasons.items() if n]
    why = f" ({', '.join(reasons)})" if reasons else ""
    return f"{_rows(summary.dropped_failed)} dropped because a step failed or skipped them{why}"


def placeholder_warning(ds: datasets.Dataset, summary: RunSummary | None) -> str | None:
    """A warning when the data was written by the offline demo teacher (its fields carry a placeholder mark),
    whatever way it was run: the CLI's --demo, or rare_hf.testing.LocalTeacher from Python."""
    demo = summary is not None and summary.model == DEMO_MODEL
    columns = [c for c in ("question", "reasoning") if c in ds.column_names]
    head = ds.select(range(min(len(ds), 20)))
    marked = any(PLACEHOLDER_MARK in str(v) for c in columns for v in column_values(head, c))
    if not (demo or marked):
        return None
    return (
        "> **Placeholder data.** These rows were written by rare_hf's offline demo teacher, not by a language "
        "model: the questions and reasoning are placeholders. Do not train on them."
    )


def columns_table(ds: datasets.Dataset, summary: RunSummary | None) -> str:
    docs = dict(_INPUT_DOCS)
    for step in summary.steps if summary is not None else _default_steps():
        docs.update(step.columns)
    rows = ["| column | type | description |", "|---|---|---|"]
    for name, feature in ds.features.items():
        rows.append(f"| `{name}` | {_type_name(feature)} | {docs.get(name, 'From the input.')} |")
    return "\n".join(rows)


def _default_steps() -> list[StepSummary]:
    """Column docs of every built-in step with its default keys, for a card pushed without a run summary."""
    from ..steps.base import column_docs
    from ..steps.plan import plan_steps

    plan = plan_steps(ALL_STEPS)
    return [StepSummary(step=s.name, columns=column_docs(s.definition.columns(s.kwargs))) for s in plan.steps]


def _type_name(feature: Any) -> str:
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list[{_type_name(inner)}]"
    return getattr(feature, "dtype", type(feature).__name__)


def generation(summary: RunSummary | None) -> str:
    if summary is None:
        return "No run summary was given when this dataset was pushed."
    prompts = "\n\n".join(
        f"<details><summary>Prompt <code>{p.version}</code></summary>\n\n"
        + (f"**System:**\n\n```text\n{p.system}\n```\n\n" if p.system.strip() else "")
        + f"**User template:**\n\n```text\n{p.user}\n```\n</details>"
        for p in used_prompts(summary)
    )
    return "\n".join(
        [
            f"- Teacher model: `{summary.model}`",
            f"- rare_hf version: `{summary.rare_hf_version}`; finished {summary.finished_at}",
            f"- Prompt versions: {', '.join(f'`{v}`' for v in summary.prompt_versions.values())}",
            f"- Seed of the document shuffles: `{summary.params.get('seed')}`",
            *(
                f"- Structured outputs ({s.step}): {s.stats['structured_output']}"
                for s in summary.steps
                if "structured_output" in s.stats
            ),
            f"- Steps: {', '.join(s.step for s in summary.steps)}; parameters below and in `{RUN_CONFIG_FILENAME}`.",
            "",
            f"```json\n{json.dumps(summary.params, indent=2, default=str)}\n```",
            "",
            prompts,
        ]
    )


def statistics(ds: datasets.Dataset, summary: RunSummary | None, split_rows: dict[str, int]) -> str:
    per_split = ", ".join(f"{name} {rows:,}" for name, rows in split_rows.items())
    lines = [f"- Rows: {sum(split_rows.values()):,} ({per_split})"]
    if summary is not None:
        lines.append(f"- Last run: {summary.rows_out:,} rows from {summary.rows_in:,} input rows; {_dropped(summary)}")
        usage = summary.usage()
        if summary.price is not None:
            lines.append(
                f"- Cost of the data: ${usage.get('data_usd', 0):.4f} (the last run paid ${usage.get('usd', 0):.4f}; "
                "the rest were replies its response cache held)"
            )
        lines.append("")
        priced = summary.price is not None
        lines.append(
            "| step | ok | failed | skipped | requests | cached replies | prompt tokens | completion tokens "
            "| paid by the last run |" + (" cost (USD) | paid by the last run (USD) |" if priced else "")
        )
        lines.append("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if priced else ""))
        for s in summary.steps:
            lines.append(f"| {s.step} | {s.ok} | {s.failed} | {s.skipped} | {_usage_cells(s.usage, priced)}")
        if len(summary.steps) > 1:
            lines.append(f"| **total** | | | | {_usage_cells(summary.usage(), priced)}")
        lines.append(
            "\nToken counts are what the data cost, including replies a resumed run took from the response cache."
        )
        if summary.price is not None:
            lines.append(f"Dollars at {describe_price(summary.price)}.")
        negatives = summary.step("hard_negatives")
        if negatives is not None:
            lines.append(
                f"\n- Hard negatives per row: mean {negatives.stats.get('mean_negatives')}, "
                f"rows short of the target: {negatives.stats.get('short')}"
            )
            lines += _guards(negatives.stats, negatives.params)
        reasoning = summary.step("reasoning")
        if reasoning is not None and reasoning.stats.get("with_gold"):
            graded = reasoning.stats["with_gold"]
            lines.append(
                f"- Teacher accuracy against gold answers: first try "
                f"{reasoning.stats['first_try_correct'] / graded:.1%}, final "
                f"{reasoning.stats['final_correct'] / graded:.1%}"
            )
    roles = (
        summary.roles if summary is not None and summary.roles else {"question": "question", "reasoning": "reasoning"}
    )
    for column in (roles[role] for role in ("question", "reasoning") if role in roles):
        if column in ds.column_names:
            words = [len(t.split()) for t in ds.with_format("arrow")[column].to_pylist() if t]
            if words:
                lines.append(
                    f"- Words per {column}: mean {stats.fmean(words):.0f}, median "
                    f"{stats.median(words):.0f}, max {max(words)}"
                )
    return "\n".join(lines)


def _guards(stats: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The false-negative guards' work: candidates each removed, and the semantic guard's cut-off."""
    removed = ", ".join(f"{why} {n:,}" for why, n in stats.get("dropped_candidates", {}).items() if n)
    lines = [f"- Candidates the guards removed: {removed}"] if removed else []
    fate = "extra positives" if params.get("false_negatives") == "positive" else "dropped"
    if params.get("reranker"):
        lines.append(
            f"- Reranker `{params['reranker']['model']}`: candidates scoring at least {params.get('max_rerank_ratio')} "
            f"of their positive are {fate}"
        )
    if params.get("embedder"):
        lines.append(
            f"- Mining: {params.get('mining', 'bm25')}; embedding model `{params['embedder']['model']}`, semantic "
            f"cut-off {params.get('semantic_threshold_used')} ({params.get('max_semantic_similarity')}); candidates "
            f"found too close to their positive are {fate}"
        )
    return lines


def _usage_cells(u: dict[str, Any], priced: bool) -> str:
    prompt = u.get("prompt_tokens", 0) + u.get("cached_prompt_tokens", 0)
    completion = u.get("completion_tokens", 0) + u.get("cached_completion_tokens", 0)
    cells = (
        f"{u.get('requests', 0)} | {u.get('cached', 0)} | {prompt:,} | {completion:,} | {u.get('total_tokens', 0):,} |"
    )
    return cells + (f" {u.get('data_usd', 0):.4f} | {u.get('usd', 0):.4f} |" if priced else "")


def sample(ds: datasets.Dataset) -> dict[str, Any]:
    """The first complete row (no step failed, negatives present) among the first thousand, else row 0."""
    if not len(ds):
        return {}
    head = ds.select(range(min(len(ds), 1000)))
    errors = [c for c in head.column_names if c.endswith("_error")]
    lists = [c for c, f in head.features.items() if isinstance(f, (datasets.List, datasets.Sequence))]
    for row in head:
        if all(row[c] is None for c in errors) and all(row[c] for c in lists):
            return {k: _shorten(v) for k, v in row.items()}
    return {k: _shorten(v) for k, v in ds[0].items()}


def _shorten(value: Any, limit: int = 300) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "..."
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value[:5]]
    return value


def used_prompts(summary: RunSummary) -> list[Prompt]:
    """Every prompt the run's steps sent (custom ones from their recorded text), in step order."""
    prompts: dict[str, Prompt] = {}
    for step in summary.steps:
        for key in ("prompt_version", "repair_prompt_version"):
            version = step.params.get(key)
            if version in BUILT_IN:
                prompts[version] = BUILT_IN[version]
        if isinstance(step.params.get("prompt"), dict):
            custom = Prompt(**step.params["prompt"])
            prompts[str(custom.version)] = custom
    return list(prompts.values()) or list(PROMPTS.values())


def training_formats(repo_id: str, records: dict[str, Any]) -> str:
    """Per published format: its configuration, size, what it trains and the call that trains on it."""
    from .formats import format_named, max_length_for, snippet

    def load(config: str, split: str) -> str:
        return f'load_dataset("{repo_id}", "{config}", split="{split}")'

    parts = [
        "Each format below is a configuration of this repo, built from the same rows (`from datasets import "
        "load_dataset`). Token counts are estimated at four characters per token; measure with your tokenizer."
    ]
    for name, data in records.items():
        fmt = format_named(name)
        if isinstance(data, datasets.DatasetDict):
            sizes = ", ".join(f"`{name}-{part}` {len(split):,} rows" for part, split in data.items())
            parts.append(f"### `{name}`: {fmt.description}\n\nConfigurations {sizes}.")
        else:
            parts.append(f"### `{name}`: {fmt.description}\n\n{len(data):,} records (configuration `{name}`).")
        max_length = max_length_for(data) if fmt.kind == "reasoning" and len(data) else None
        parts.append(f"```python\n{snippet(name, load, max_length)}\n```")
    return "\n\n".join(parts)

"""The command line's output: the dry run's table, the output folder (written whole or not at all), the push."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CliError
from ..steps.registry import BUILT_IN
from ._parser import PUBLISHING_OPTIONS, parse_formats

_ALL_STEPS = [spec.name for spec in BUILT_IN]  # a push checks format names, not which steps ran

if TYPE_CHECKING:
    import datasets

    from ..steps.pipeline import RunSummary
    from ..teacher.client import LLM
    from ..teacher.embedder import Embedder


def _embedding_bound(ds: datasets.Dataset, args: argparse.Namespace, embedder: Embedder) -> None:
    """What the semantic guard may embed: at most every document, once (only positives and the candidates
    served are sent, so usually fewer)."""
    from ..utils.datasets import column_values

    try:
        texts = [t for t in dict.fromkeys(column_values(ds, args.text_column)) if isinstance(t, str) and t.strip()]
        e = embedder.estimate(texts)
    finally:
        embedder.close()
    usd = f", ~{e.usd:.4f} USD" if e.usd is not None else ""
    print(
        f"embeddings ({embedder.model}): at most {e.texts - e.cached} documents in {e.requests} "
        f"request{'' if e.requests == 1 else 's'}, "
        f"~{e.tokens:,} tokens{usd} ({e.cached} cached); usually fewer: only positives and served candidates"
    )


def dry_run(
    ds: datasets.Dataset, llm: LLM | None, args: argparse.Namespace, steps: list[str], embedder: Embedder | None
) -> int:
    """Print what the run would send and cost; nothing is sent."""
    from ..steps.estimate import estimate_run

    if embedder is not None:
        _embedding_bound(ds, args, embedder)
    try:
        if llm is None:
            print(f"dry run: {len(ds)} rows; no step asks the teacher, so the run costs nothing.")
            return 0
        from ._inputs import quality_kwargs

        estimates = estimate_run(
            ds, llm, text_key=args.text_column, num_neg=args.num_neg, num_questions=args.num_questions, steps=steps,
            **quality_kwargs(args, steps),
        )  # fmt: skip
    finally:
        if llm is not None:
            llm.close()
    print(f"dry run: {len(ds)} rows; nothing was sent.")
    print(f"{'step':<18}{'requests':>10}{'cached':>8}{'est. prompt tokens':>20}{'est. completion':>17}{'est. USD':>10}")
    for e in estimates:
        usd = f"{e.usd:>10.4f}" if e.usd is not None else f"{'-':>10}"
        print(f"{e.step:<18}{e.requests:>10}{e.cached:>8}{e.prompt_tokens:>20,}{e.completion_tokens:>17,}{usd}")
    assumed = ", ".join(f"{s.completion_tokens} {s.name}" for s in BUILT_IN if s.uses_llm and s.name in steps)
    print(
        f"Completion tokens assume first-try replies of {assumed} tokens; repairs and resamples add to them. "
        "Prompts after the questions step are estimated (their questions do not exist yet)."
        + (" Prices include the batch discount." if args.batch else "")
    )
    return 0


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise CliError("--push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login`.")
    return token


def write_outputs(
    ds: datasets.Dataset, summary: RunSummary, output: Path, exports: list[str], args: argparse.Namespace
) -> None:
    """Write everything into a sibling folder, then move it into place: an interrupted run leaves no
    half-written output, and --overwrite replaces the old folder only once the new one is complete."""
    from ..io.formats import export_all, write_exports

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        ds.save_to_disk(str(partial / "dataset"))
        (partial / "summary.json").write_text(summary.to_json())
        columns = {"input_text_key": args.text_column}
        _, records = export_all(ds, exports, eval_fraction=args.eval_fraction, seed=args.seed, columns=columns)
        write_exports(records, partial)
        if output.exists():
            shutil.rmtree(output)
        partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def push(
    ds: datasets.Dataset,
    summary: RunSummary | None,
    args: argparse.Namespace,
    token: str | None,
    output: Path,
    text_column: str = "text",
) -> int:
    from ..io.hub import push_to_hub

    language = [code.strip() for code in args.language.split(",")] if args.language else None
    try:
        url = push_to_hub(
            ds,
            args.push_to_hub,
            private=args.private,
            token=token,
            summary=summary,
            license=args.license,
            pretty_name=args.pretty_name,
            language=language,
            formats=parse_formats(args.format, list(_ALL_STEPS)) if args.format else (),
            eval_fraction=args.eval_fraction,
            seed=args.seed or 0,
            columns={"input_text_key": text_column},
        )
    except Exception as exc:  # noqa: BLE001 - the data is safe on disk; say how to retry only the push
        print(
            f"error: the push to {args.push_to_hub} failed ({exc}). The data is saved in {output}/dataset; "
            f"retry only the push with: {push_command(args, output)}",
            file=sys.stderr,
        )
        return 1
    print(f"Pushed to {url}")
    return 0


def push_command(args: argparse.Namespace, output: Path) -> str:
    """The `rare-hf push` command that publishes ``output`` with every publishing option of this run."""
    words = ["rare-hf", "push", str(output), args.push_to_hub]
    for flag, attribute, switch in PUBLISHING_OPTIONS:
        value = getattr(args, attribute)
        if switch and value:
            words.append(flag)
        elif not switch and value is not None and (flag != "--seed" or args.eval_fraction):
            words += [flag, str(value)]
    return shlex.join(words)


def push_folder(args: argparse.Namespace) -> int:
    """`rare-hf push`: publish an earlier run's output folder, its summary in the card when it has one."""
    from ..steps.pipeline import RunSummary
    from ._inputs import load_local

    given = Path(args.output)
    if not given.is_dir():
        raise CliError(f"{given}: no such folder; give the --output folder of an earlier run.")
    output = given.parent if given.name == "dataset" and (given.parent / "summary.json").exists() else given
    ds = load_local(output)
    summary_file = output / "summary.json"
    summary = RunSummary.from_dict(json.loads(summary_file.read_text())) if summary_file.exists() else None
    args.push_to_hub = args.repo
    params = summary.params if summary is not None else {}
    if args.seed is None:
        args.seed = params.get("seed", 0)
    return push(ds, summary, args, hub_token(), output, params.get("text_key", "text"))

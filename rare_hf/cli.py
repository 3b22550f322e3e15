"""Command line: build a RARE training set from documents (``rare-hf`` / ``scripts/build_rare_dataset.py``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CliError, LLMConfigError, LLMFatalError
from .steps.registry import BUILT_IN, DEFAULT_STEPS, aliases

if TYPE_CHECKING:  # the heavy modules load after the arguments are parsed: --help stays instant
    import datasets

    from .teacher.client import LLM
    from .steps.pipeline import RunSummary

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_EXPORTS = ("messages", "rare", "triples")
DEMO_MODEL = "rare-hf-demo-teacher"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rare-hf",
        description="Build a RARE training set from documents: questions, BM25 hard negatives, distilled reasoning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    src = parser.add_argument_group("input")
    src.add_argument(
        "input", nargs="?", help="a .jsonl/.json/.parquet/.csv file, a folder of them, or a Hub dataset id"
    )
    src.add_argument(
        "--demo",
        action="store_true",
        help="run on the bundled sample documents with a built-in offline teacher (no key, no network)",
    )
    src.add_argument("--split", default="train", help="split to load (Hub datasets and files; default: train)")
    src.add_argument("--config", default=None, help="Hub dataset configuration name")
    src.add_argument("--text-column", default="text", help="column holding the documents (default: text)")
    src.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    teacher = parser.add_argument_group("teacher (any OpenAI-compatible endpoint)")
    teacher.add_argument("--model", default=None, help="teacher model (default: $RARE_HF_MODEL)")
    teacher.add_argument(
        "--base-url",
        action="append",
        default=None,
        help="endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL or OpenAI); give it several times, "
        "or comma-separated, for replicas of one model",
    )
    teacher.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="name of the environment variable holding the key"
    )
    teacher.add_argument(
        "--max-concurrency", type=int, default=64, help="most requests in flight; probed upward from 16 (default: 64)"
    )
    teacher.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0.0)")
    teacher.add_argument("--max-tokens", type=int, default=None, help="completion budget (default: the server's)")
    teacher.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one attempt may take, first byte to last (default: 120)"
    )
    teacher.add_argument(
        "--max-retries", type=int, default=6, help="retries of a request on 429/5xx/timeouts (default: 6)"
    )
    teacher.add_argument(
        "--cache-dir", default=None, help="response cache folder (default: $RARE_HF_CACHE or ~/.cache/rare_hf)"
    )
    teacher.add_argument(
        "--batch",
        action="store_true",
        help="send the requests through the OpenAI Batch API: half the price, results within 24 h; re-run the "
        "same command to collect batches a stopped run submitted",
    )
    teacher.add_argument(
        "--price",
        default=None,
        metavar="IN,OUT",
        help="USD per million input and output tokens, e.g. 0.15,0.60: dollars in the progress, summary and card",
    )
    teacher.add_argument(
        "--dry-run",
        action="store_true",
        help="count the requests and estimate the tokens (and dollars, with --price) of the run; send nothing",
    )
    steps = parser.add_argument_group("steps")
    steps.add_argument(
        "--steps",
        default=",".join(_short_name(name) for name in DEFAULT_STEPS),
        help="comma-separated steps (default: %(default)s); they run in this order: "
        + "; ".join(f"{_short_name(spec.name)}: {spec.help}" for spec in BUILT_IN),
    )
    steps.add_argument("--num-neg", type=int, default=3, help="hard negatives per question (default: 3)")
    steps.add_argument("--num-questions", type=int, default=1, help="questions per document (default: 1)")
    steps.add_argument("--answer-column", default=None, help="gold answers: verify and resample the teacher's answers")
    steps.add_argument("--seed", type=int, default=0, help="seed of the per-row document shuffles (default: 0)")
    steps.add_argument("--keep-failed", action="store_true", help="keep rows where a step failed")
    scale = parser.add_argument_group("scale-out (pip install 'rare-hf[ray]')")
    scale.add_argument("--ray", action="store_true", help="run the steps on a Ray cluster (a local one if none runs)")
    scale.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one)"
    )
    scale.add_argument("--ray-actors", type=int, default=2, help="actors per step on Ray (default: 2)")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output", default=None, help="output folder (default: rare_output, or rare_demo_output with --demo)"
    )
    out.add_argument(
        "--format",
        default=None,
        help="training exports, comma-separated: messages, rare, triples (default: messages when reasoning runs, "
        "else triples)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    out.add_argument("--push-to-hub", metavar="REPO", default=None, help="also publish the dataset to this Hub repo")
    out.add_argument("--private", action="store_true", help="make the Hub repo private")
    out.add_argument("--license", default=None, help="license of the pushed dataset, e.g. cc-by-4.0 (never guessed)")
    out.add_argument("--pretty-name", default=None, help="title of the pushed dataset's card")
    out.add_argument("--language", default=None, help="language code(s) for the card, comma-separated, e.g. en,zh")
    out.add_argument("-v", "--verbose", action="store_true", help="log every step's details")
    return parser


_EPILOG = """examples:
  rare-hf --demo                                       offline, on the bundled sample documents
  rare-hf docs.jsonl --model gpt-4o-mini --output out
  rare-hf docs/ --text-column body --model Qwen/Qwen2.5-7B-Instruct --base-url http://localhost:8000/v1 \\
      --api-key-env VLLM_KEY --max-concurrency 128
  rare-hf out/dataset --steps negatives --format triples --output out-neg    (a folder this command wrote)
  rare-hf docs.jsonl --model M --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --ray --ray-actors 8

Responses are cached on disk: after a crash or Ctrl-C, run the same command again to resume."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args)
    except (CliError, LLMConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LLMFatalError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = f" in {args.cache_path}" if getattr(args, "cache_path", None) else ""
        print(
            f"\ninterrupted: the replies received so far are cached{where}; run the same command to resume.",
            file=sys.stderr,
        )
        return 130


def _run(args: argparse.Namespace) -> int:
    steps = _parse_steps(args.steps)
    if args.ray and importlib.util.find_spec("ray") is None:
        raise CliError("--ray needs the ray extra: pip install 'rare-hf[ray]'")
    if args.ray_actors < 1:
        raise CliError(f"--ray-actors must be at least 1, got {args.ray_actors}.")
    if args.ray and args.batch:
        raise CliError("--batch and --ray do not go together: the Batch API needs no cluster; drop --ray.")
    args.price_per_million = _parse_price(args.price)
    exports = _parse_formats(args.format, steps)
    output = Path(args.output or ("rare_demo_output" if args.demo else "rare_output"))
    if output.exists() and not args.overwrite:
        raise CliError(f"--output {output} already exists; pass --overwrite to replace it, or choose another folder.")
    _quiet_libraries()
    from .steps.pipeline import build_rare_dataset

    with _teacher_endpoint(args) as (base_url, api_key, model, cache_dir):
        ds = _load_input(args)
        _check_columns(ds, args, steps)
        token = _hub_token() if args.push_to_hub else None
        needs_llm = any(spec.uses_llm for spec in BUILT_IN if spec.name in steps)
        llm = _make_llm(args, base_url, api_key, model, cache_dir) if needs_llm else None
        args.cache_path = llm.cache_path if llm is not None else None
        if args.dry_run:
            return _dry_run(ds, llm, args, steps)
        try:
            if llm is not None:
                llm.check_connection()
                print(
                    f"Teacher: {llm.model} at {llm.display_url}. Responses are cached in {llm.cache_path}; "
                    "if this run is interrupted, re-run the same command to resume."
                )
            if args.demo:
                print(
                    "DEMO: the built-in offline teacher writes PLACEHOLDER questions and reasoning, "
                    "not real model output. Use --model/--base-url for real data."
                )
            if args.ray:
                ds, summary = _build_on_ray(ds, args, steps, output, llm, (base_url, api_key, model, cache_dir))
            else:
                ds, summary = build_rare_dataset(
                    ds, llm, **_pipeline_kwargs(args), steps=steps, keep_failed=args.keep_failed, return_summary=True
                )
        finally:
            if llm is not None:
                llm.close()
    _write_outputs(ds, summary, output, exports, args)
    shutil.rmtree(output.parent / f".{output.name}.ray", ignore_errors=True)
    print(summary.table())
    cached = sum(s.usage.get("cached", 0) for s in summary.steps)
    if cached:
        cached_tokens = sum(s.usage.get("data_tokens", 0) - s.usage.get("total_tokens", 0) for s in summary.steps)
        print(
            f"{cached} responses came from the cache: {cached_tokens:,} tokens paid by an earlier run, "
            "none by this one."
        )
    print(f"Wrote {output}/")
    if args.push_to_hub:
        return _push(ds, summary, args, token, output)
    return 0


def _short_name(step: str) -> str:
    """The name --steps shows: the shortest a step answers to."""
    return min((alias for alias, name in aliases().items() if name == step), key=len)


def _parse_steps(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    known = aliases()
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        choices = ", ".join(_short_name(spec.name) for spec in BUILT_IN)
        raise CliError(f"--steps: unknown step(s) {unknown}; choose from {choices}.")
    chosen = {known[s] for s in names}
    return [spec.name for spec in BUILT_IN if spec.name in chosen]


def _parse_formats(text: str | None, steps: list[str]) -> list[str]:
    if text is None:
        return ["messages"] if "reasoning" in steps else ["triples"] if "hard_negatives" in steps else []
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in _EXPORTS]
    if unknown or not formats:
        raise CliError(f"--format: unknown export(s) {unknown}; choose from {', '.join(_EXPORTS)}.")
    for export in formats:
        if export in ("messages", "rare") and "reasoning" not in steps:
            raise CliError(f"--format {export} needs the reasoning step; add it to --steps or choose --format triples.")
    return list(dict.fromkeys(formats))


def _quiet_libraries() -> None:
    """One progress bar per step (ours): the libraries' own bars and repeated warnings off while we run."""
    import bm25s  # noqa: F401 - imported first: it sets its logger's level when imported
    import datasets
    from huggingface_hub.utils import disable_progress_bars

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs index internals at DEBUG
    datasets.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    disable_progress_bars()


@contextlib.contextmanager
def _teacher_endpoint(args: argparse.Namespace) -> Iterator[tuple[Any, str | None, str | None, Any]]:
    """The teacher's (base_url, api_key, model, cache_dir); with --demo, a local server for the run. The demo
    caches in a folder of its own that outlives the run (cache keys do not depend on the server's port), so
    re-running the demo resumes like any other run."""
    if not args.demo:
        urls = [u.strip() for given in args.base_url or [] for u in given.split(",") if u.strip()]
        yield urls or None, os.environ.get(args.api_key_env), args.model, args.cache_dir
        return
    from .teacher.cache import default_cache_dir
    from .testing.server import LocalTeacher

    with LocalTeacher() as teacher:
        yield teacher.url, "EMPTY", DEMO_MODEL, args.cache_dir or default_cache_dir() / "demo"


def _make_llm(args: argparse.Namespace, base_url: Any, api_key: str | None, model: str | None, cache_dir: Any) -> LLM:
    from .teacher.client import LLM

    if not api_key:
        raise CliError(
            f"no API key: set the environment variable {args.api_key_env} (named by --api-key-env); "
            "local servers without auth accept any value, e.g. EMPTY."
        )
    if model is None and not os.environ.get("RARE_HF_MODEL"):
        raise CliError("no teacher model: pass --model or set RARE_HF_MODEL.")
    return LLM(**_llm_kwargs(args, base_url, api_key, model), cache_dir=cache_dir)


def _parse_price(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        prices = tuple(float(p) for p in text.split(","))
    except ValueError:
        prices = ()
    if len(prices) != 2 or min(prices) < 0:
        raise CliError(f"--price: expected two numbers IN,OUT (USD per million tokens), e.g. 0.15,0.60; got {text!r}.")
    return prices  # type: ignore[return-value]


def _dry_run(ds: datasets.Dataset, llm: LLM | None, args: argparse.Namespace, steps: list[str]) -> int:
    """Print what the run would send and cost; nothing is sent."""
    from .steps.estimate import estimate_run

    try:
        if llm is None:
            print(f"dry run: {len(ds)} rows; no step asks the teacher, so the run costs nothing.")
            return 0
        estimates = estimate_run(
            ds, llm, text_key=args.text_column, num_neg=args.num_neg, num_questions=args.num_questions, steps=steps
        )
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


def _llm_kwargs(args: argparse.Namespace, base_url: Any, api_key: str | None, model: str | None) -> dict[str, Any]:
    return {
        "model": model,
        "base_url": base_url,
        "api_key": api_key,
        "max_concurrency": args.max_concurrency,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "batch": args.batch,
        "price_per_million": args.price_per_million,
    }


def _build_on_ray(
    ds: datasets.Dataset,
    args: argparse.Namespace,
    steps: list[str],
    output: Path,
    llm: LLM | None,
    teacher: tuple[Any, str | None, str | None, Any],
) -> tuple[datasets.Dataset, RunSummary]:
    """The pipeline on Ray: the actors cache beside the single-machine cache (each its own file, all read by
    all), and the shards go to a work folder next to --output that is removed once the output is written."""
    import ray

    from .ray import build_rare_dataset_ray

    base_url, api_key, model, _ = teacher
    llm_kwargs = _llm_kwargs(args, base_url, api_key, model)
    if llm is not None:
        llm_kwargs["model"] = llm.model  # resolved here: the actors may not see $RARE_HF_MODEL
    owns_cluster = not ray.is_initialized()
    if owns_cluster:
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=args.verbose)
    work = output.parent / f".{output.name}.ray"
    try:
        return build_rare_dataset_ray(
            ds,
            output_dir=work,
            cache_dir=llm.cache_path.parent if llm is not None and llm.cache_path else work / "cache",
            llm_kwargs=llm_kwargs,
            **_pipeline_kwargs(args),
            steps=steps,
            keep_failed=args.keep_failed,
            num_actors=args.ray_actors,
            return_summary=True,
        )
    finally:
        if owns_cluster:
            ray.shutdown()


def _load_input(args: argparse.Namespace) -> datasets.Dataset:
    import datasets

    if args.demo:
        from .io.samples import load_sample_documents

        ds = load_sample_documents()
    elif not args.input:
        raise CliError("give an input file, folder or Hub dataset id, or --demo.")
    elif Path(args.input).exists():
        ds = _load_local(Path(args.input))
    else:
        try:
            ds = datasets.load_dataset(args.input, args.config, split=args.split)
        except Exception as exc:  # noqa: BLE001 - any loading failure is a configuration error here
            raise CliError(f"cannot load '{args.input}' as a local path or Hub dataset: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if args.split not in ds:
            raise CliError(f"the input has splits {list(ds)}; choose one with --split.")
        ds = ds[args.split]
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    return ds


def _load_local(path: Path) -> Any:
    """Data files (one type per folder), or a folder written by ``save_to_disk`` (this command's
    ``--output``/dataset, or the output folder itself)."""
    import datasets

    for folder in (path, path / "dataset"):
        if (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(folder))
    files = sorted(p for p in path.iterdir() if p.suffix in _FORMATS) if path.is_dir() else [path]
    kinds = {_FORMATS.get(p.suffix) for p in files}
    if not files or None in kinds:
        raise CliError(f"{path}: expected .jsonl, .json, .parquet or .csv files, or a save_to_disk folder.")
    if len(kinds) > 1:
        raise CliError(f"{path}: mixes file types {sorted(kinds)}; keep one type per folder.")
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        raise CliError(f"{empty[0]} is empty: there are no documents to read.")
    try:
        ds = datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
    except Exception as exc:  # noqa: BLE001 - a file datasets cannot read is the user's input problem
        if "corresponds to no data" in str(exc):  # datasets' words for a file without rows
            raise CliError(f"{path} has no rows: there are no documents to read.") from exc
        raise CliError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if len(ds) == 0:
        raise CliError(f"{path} has no rows: there are no documents to read.")
    return ds


def _pipeline_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "text_key": args.text_column,
        "num_neg": args.num_neg,
        "num_questions": args.num_questions,
        "answer_key": args.answer_column,
        "seed": args.seed,
    }


_FLAG_NAMES = {"input_key": "--text-column", "input_text_key": "--text-column", "answer_key": "--answer-column"}


def _check_columns(ds: datasets.Dataset, args: argparse.Namespace, steps: list[str]) -> None:
    """Fail before any request when a column the chosen steps read is missing (the pipeline's own check,
    naming our flags, or saying the column must come from an earlier run)."""
    from .steps.plan import check_inputs, plan_steps

    plan = plan_steps(steps, **_pipeline_kwargs(args))
    names = {
        "input_question_key": "a question column from an earlier run",
        "input_scenario_key": "a scenario column from an earlier run",
        "input_hardneg_key": "a hard negatives column from an earlier run",
        **_FLAG_NAMES,
    }
    try:
        check_inputs(ds, plan, names)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise CliError("--push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login`.")
    return token


def _write_outputs(
    ds: datasets.Dataset, summary: RunSummary, output: Path, exports: list[str], args: argparse.Namespace
) -> None:
    """Write everything into a sibling folder, then move it into place: an interrupted run leaves no
    half-written output, and --overwrite replaces the old folder only once the new one is complete."""
    from .io.export import to_retrieval_triples, to_sft

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        ds.save_to_disk(str(partial / "dataset"))
        (partial / "summary.json").write_text(summary.to_json())
        text_key = {"input_text_key": args.text_column}
        for export in exports:
            records = to_retrieval_triples(ds, **text_key) if export == "triples" else to_sft(ds, export, **text_key)
            records.to_parquet(str(partial / f"{export}.parquet"))
            records.to_json(str(partial / f"{export}.jsonl"), lines=True, force_ascii=False)
        if output.exists():
            shutil.rmtree(output)
        partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _push(ds: datasets.Dataset, summary: RunSummary, args: argparse.Namespace, token: str | None, output: Path) -> int:
    from .io.hub import push_to_hub

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
        )
    except Exception as exc:  # noqa: BLE001 - the data is safe on disk; say how to retry only the push
        print(
            f"error: the push to {args.push_to_hub} failed ({exc}). The data is saved in {output}/dataset; "
            f'retry only the push with: python -c "import datasets, rare_hf, json; '
            f"rare_hf.push_to_hub(datasets.load_from_disk('{output}/dataset'), '{args.push_to_hub}', "
            f"summary=rare_hf.RunSummary.from_dict(json.load(open('{output}/summary.json'))))\"",
            file=sys.stderr,
        )
        return 1
    print(f"Pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

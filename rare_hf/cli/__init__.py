"""Command line: build a RARE training set from documents (``rare-hf`` / ``scripts/build_rare_dataset.py``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..demo import DEMO_MODEL
from ..errors import CliError, LLMConfigError, LLMFatalError
from ..steps.registry import BUILT_IN
from ._inputs import check_columns, load_input, pipeline_kwargs, quality_kwargs
from ._models import NegativeModels
from ._outputs import dry_run, hub_token, push, push_folder, write_outputs
from ._parser import build_parser, build_push_parser, parse_formats, parse_price, parse_steps

__all__ = ["main", "build_parser"]

if TYPE_CHECKING:  # the heavy modules load after the arguments are parsed: --help stays instant
    import datasets

    from ..steps.pipeline import RunSummary
    from ..teacher.client import LLM
    from ..teacher.local import LocalServer


class _Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm, Kubernetes, systemd), unwound like Ctrl-C so the partial output is cleaned up."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pushing = argv[:1] == ["push"]
    args = (build_push_parser() if pushing else build_parser()).parse_args(argv[1:] if pushing else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    with _sigterm_as_interrupt():
        try:
            return push_folder(args) if pushing else _run(args)
        except (CliError, LLMConfigError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except LLMFatalError as exc:
            print(exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, _Terminated)
            where = f" in {args.cache_path}" if getattr(args, "cache_path", None) else ""
            print(
                f"\n{'terminated' if terminated else 'interrupted'}: the replies received so far are cached{where}; "
                "run the same command to resume.",
                file=sys.stderr,
            )
            return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (main() called from a worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps, against=args.against is not None, drop_easy=args.drop_easy, ray=args.ray)
    if args.ray and importlib.util.find_spec("ray") is None:
        raise CliError("--ray needs the ray extra: pip install 'rare-hf[ray]'")
    if args.ray_actors < 1:
        raise CliError(f"--ray-actors must be at least 1, got {args.ray_actors}.")
    filters = [s for s in steps if s in ("dedup", "decontaminate", "dedup_questions", "easiness")]
    if args.ray and filters:
        raise CliError(f"--ray: the quality filters {filters} do not run on Ray yet; drop --ray or those steps.")
    if args.ray and args.batch:
        raise CliError("--batch and --ray do not go together: the Batch API needs no cluster; drop --ray.")
    args.price_per_million = parse_price(args.price)
    if args.demo and (args.local or args.local_model):  # a real model on a CPU: minutes, not an hour
        args.limit = 6 if args.limit is None else args.limit
        args.max_tokens = 384 if args.max_tokens is None else args.max_tokens
    exports = parse_formats(args.format, steps, args.eval_fraction)
    output = Path(args.output or ("rare_demo_output" if args.demo else "rare_output"))
    if output.exists() and not args.overwrite and not args.dry_run:  # a dry run writes nothing
        raise CliError(f"--output {output} already exists; pass --overwrite to replace it, or choose another folder.")
    _quiet_libraries()
    from ..steps.pipeline import build_rare_dataset

    with _teacher_endpoint(args) as (base_url, api_key, model, cache_dir):
        ds = load_input(args)
        check_columns(ds, args, steps)
        token = hub_token() if args.push_to_hub else None
        needs_llm = any(spec.uses_llm for spec in BUILT_IN if spec.name in steps)
        llm = _make_llm(args, base_url, api_key, model, cache_dir) if needs_llm else None
        args.cache_path = llm.cache_path if llm is not None else None
        models = NegativeModels.from_args(args, steps, base_url, api_key, cache_dir)
        if args.dry_run:
            return dry_run(ds, llm, args, steps, models.embedder)
        try:
            models.check_connections()
            if llm is not None:
                llm.check_connection()
                print(
                    f"Teacher: {llm.model} at {llm.display_url}. Responses are cached in {llm.cache_path}; "
                    "if this run is interrupted, re-run the same command to resume."
                )
            if args.demo and model == DEMO_MODEL:
                print(
                    "DEMO: the built-in offline teacher writes PLACEHOLDER questions and reasoning, "
                    "not real model output. Use --local for a real (tiny) model, --model/--base-url for real data."
                )
            if args.ray:
                ds, summary = _build_on_ray(ds, args, steps, output, llm, (base_url, api_key, model, cache_dir))
            else:
                ds, summary = build_rare_dataset(
                    ds,
                    llm,
                    **pipeline_kwargs(args),
                    negatives_kwargs=models.negatives_kwargs(ds, args, steps),
                    verify_kwargs={"false_negatives": args.false_negatives} if "verify_negatives" in steps else None,
                    **quality_kwargs(args, steps),
                    steps=steps,
                    keep_failed=args.keep_failed,
                    overwrite=True,  # the steps named on the command line run; the input on disk is untouched
                    return_summary=True,
                )
        finally:
            models.close()
            if llm is not None:
                llm.close()
    write_outputs(ds, summary, output, exports, args)
    shutil.rmtree(output.parent / f".{output.name}.ray", ignore_errors=True)
    print(summary.table())
    usage = summary.usage()
    cached = usage.get("cached", 0)
    if cached:
        cached_tokens = usage.get("data_tokens", 0) - usage.get("total_tokens", 0)
        sent = usage.get("requests", 0)
        print(
            f"{cached} responses came from the cache ({cached_tokens:,} tokens, paid for by an earlier run); "
            f"this run sent {sent} request{'' if sent == 1 else 's'} ({usage.get('total_tokens', 0):,} tokens)."
        )
    print(f"Wrote {output}/")
    if args.push_to_hub:
        return push(ds, summary, args, token, output, args.text_column)
    return 0


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
    """The teacher's (base_url, api_key, model, cache_dir); with --demo or a local model, a server in this
    process for the run. The demo caches in a folder of its own that outlives the run (cache keys do not
    depend on the server's port), so re-running the demo resumes like any other run."""
    from ..teacher.cache import default_cache_dir

    demo_cache = args.cache_dir or default_cache_dir() / "demo"
    if args.local or args.local_model:
        with _local_server(args) as server:
            yield server.base_url, "EMPTY", server.model_path.stem, demo_cache if args.demo else args.cache_dir
    elif args.demo:
        from ..testing.server import LocalTeacher

        with LocalTeacher() as teacher:
            yield teacher.url, "EMPTY", DEMO_MODEL, demo_cache
    else:
        urls = [u.strip() for given in args.base_url or [] for u in given.split(",") if u.strip()]
        yield urls or None, os.environ.get(args.api_key_env), args.model, args.cache_dir


@contextlib.contextmanager
def _local_server(args: argparse.Namespace) -> Iterator[LocalServer]:
    from ..teacher.local import DEMO_LOCAL_MODEL, LocalServer, resolve_model

    if args.base_url or args.model:
        raise CliError("--local-model / --local run the teacher here: leave out --base-url and --model.")
    try:
        path = resolve_model(args.local_model or DEMO_LOCAL_MODEL)
        n_ctx = args.local_ctx or (2048 if args.demo else 4096)
        server = LocalServer(path, n_ctx=n_ctx, parallel=args.local_parallel, gpu_layers=args.gpu_layers)
    except LLMConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        yield server
    finally:
        server.close()


def _make_llm(args: argparse.Namespace, base_url: Any, api_key: str | None, model: str | None, cache_dir: Any) -> LLM:
    from ..teacher._config import is_loopback, resolve_urls
    from ..teacher.client import LLM

    if not api_key and not all(is_loopback(u) for u in resolve_urls(base_url)):
        raise CliError(
            f"no API key: set the environment variable {args.api_key_env} (named by --api-key-env); "
            "servers on this machine need none, others without auth accept any value, e.g. EMPTY."
        )
    if model is None and not os.environ.get("RARE_HF_MODEL"):
        raise CliError("no teacher model: pass --model or set RARE_HF_MODEL.")
    return LLM(**_llm_kwargs(args, base_url, api_key, model), cache_dir=cache_dir)


def _llm_kwargs(args: argparse.Namespace, base_url: Any, api_key: str | None, model: str | None) -> dict[str, Any]:
    local = bool(args.local or args.local_model)
    return {
        "model": model,
        "base_url": base_url,
        "api_key": api_key,
        # A local server decodes --local-parallel requests at once (and says its window itself: /props).
        "max_concurrency": args.local_parallel if local else args.max_concurrency,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "batch": args.batch,
        "price_per_million": args.price_per_million,
        "max_failure_rate": args.max_failure_rate,
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

    from ..ray import build_rare_dataset_ray

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
            **pipeline_kwargs(args),
            steps=steps,
            keep_failed=args.keep_failed,
            num_actors=args.ray_actors,
            return_summary=True,
        )
    finally:
        if owns_cluster:
            ray.shutdown()

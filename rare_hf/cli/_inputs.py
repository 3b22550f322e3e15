"""The command line's input: files, folders, save_to_disk output and Hub ids, checked before any request."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CliError

if TYPE_CHECKING:
    import datasets


_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_input(args: argparse.Namespace) -> datasets.Dataset:
    import datasets

    if args.demo:
        from ..io.samples import load_sample_documents

        ds = load_sample_documents()
    elif not args.input:
        raise CliError("give an input file, folder or Hub dataset id, or --demo.")
    elif Path(args.input).expanduser().exists():
        ds = load_local(Path(args.input).expanduser(), args.encoding)
    elif _looks_like_a_path(args.input):  # not a Hub id: say so at once instead of retrying the Hub
        raise CliError(f"{args.input}: no such file or folder.")
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


def _looks_like_a_path(given: str) -> bool:
    """A data file's name, or a path spelled as one (``./x``, ``/x``, ``~/x``, ``x\\y``): Hub ids are
    ``name`` or ``owner/name``, without these."""
    return Path(given).suffix in _FORMATS or given.startswith((".", "/", "~")) or "\\" in given or given.count("/") > 1


def load_local(path: Path, encoding: str = "utf-8") -> Any:
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
    kind = kinds.pop()
    for file in files:
        _check_file(file, kind, encoding)
    text_options = {"encoding": encoding} if kind in ("json", "csv") else {}
    try:
        with _silenced("datasets"):  # its own log lines would repeat the one we print
            ds = datasets.load_dataset(kind, data_files=[str(p) for p in files], split="train", **text_options)
    except Exception as exc:  # noqa: BLE001 - a file datasets cannot read is the user's input problem
        if "corresponds to no data" in str(exc):  # datasets' words for a file without rows
            raise CliError(f"{path} has no rows: there are no documents to read.") from exc
        raise CliError(f"cannot read {path}: {_root_message(exc)}") from exc
    if len(ds) == 0:
        raise CliError(f"{path} has no rows: there are no documents to read.")
    return ds


def _check_file(file: Path, kind: str, encoding: str) -> None:
    """One line naming the file and what to do, before ``datasets`` fails on it with several."""
    if file.stat().st_size == 0:
        raise CliError(f"{file} is empty: there are no documents to read.")
    if kind == "parquet":
        import pyarrow.parquet as pq

        if pq.ParquetFile(file).metadata.num_rows == 0:
            raise CliError(f"{file} has no rows: there are no documents to read.")
    elif codecs.lookup(encoding).name == "utf-8":
        line = _first_line_not_utf8(file)
        if line is not None:
            raise CliError(
                f"{file}: line {line} is not UTF-8. Pass its encoding (e.g. --encoding latin-1), or convert it: "
                f"iconv -f latin1 -t utf-8 {file} > utf8-{file.name}"
            )


def _first_line_not_utf8(file: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with file.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError:
                return number
    return None


def _root_message(exc: BaseException) -> str:
    """The first line of the innermost cause (datasets wraps a reader's error in "An error occurred ...")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level, logger.level = logger.level, logging.CRITICAL + 1
    try:
        yield
    finally:
        logger.level = level


def pipeline_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "text_key": args.text_column,
        "num_neg": args.num_neg,
        "num_questions": args.num_questions,
        "answer_key": args.answer_column,
        "seed": args.seed,
    }


def quality_kwargs(args: argparse.Namespace, steps: list[str]) -> dict[str, Any]:
    """The quality filters' arguments from the flags, for the steps that run."""
    kwargs: dict[str, Any] = {}
    if "dedup" in steps:
        kwargs["dedup_kwargs"] = {"threshold": args.dedup_threshold}
    if "decontaminate" in steps:
        if args.against is None:
            raise CliError("--steps decontaminate needs --against PATH_OR_HUB_ID (the evaluation set).")
        kwargs["decontaminate_kwargs"] = {"against": args.against, "action": args.contaminated}
    if "easiness" in steps:
        kwargs["easiness_kwargs"] = {"drop_easy": args.drop_easy}
    if args.reference_answers:
        if "questions" not in steps:
            raise CliError("--reference-answers needs the questions step in --steps.")
        kwargs["question_kwargs"] = {"reference_answer": True}
    return kwargs


_FLAG_NAMES = {"input_key": "--text-column", "input_text_key": "--text-column", "answer_key": "--answer-column"}


def check_columns(ds: datasets.Dataset, args: argparse.Namespace, steps: list[str]) -> None:
    """Fail before any request when a column the chosen steps read is missing (the pipeline's own check,
    naming our flags, or saying the column must come from an earlier run)."""
    from ..steps.plan import check_inputs, plan_steps

    plan = plan_steps(steps, **pipeline_kwargs(args), **quality_kwargs(args, steps))
    names = {
        "input_question_key": "a question column from an earlier run",
        "input_scenario_key": "a scenario column from an earlier run",
        "input_hardneg_key": "a hard negatives column from an earlier run",
        **_FLAG_NAMES,
    }
    try:
        check_inputs(ds, plan, names, overwrite=True)
    except ValueError as exc:
        raise CliError(str(exc)) from exc

"""The training formats, each declared once: its name, what it trains, the step whose columns it reads, how it
is built and the training call that consumes it. The CLI's ``--format``, :func:`rare_hf.export`, the output
folder, the Hub configs and the card's snippets all read this list."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # this list is read by ``rare-hf --help``, which must not load datasets
    import datasets

    Exported = datasets.Dataset | datasets.DatasetDict

__all__ = ["Format", "FORMATS", "export", "export_all", "write_exports", "format_named", "hub_configs"]


@dataclasses.dataclass(frozen=True)
class Format:
    """One training format.

    Attributes:
        name: What ``--format`` and :func:`rare_hf.export` call it.
        kind: ``"reasoning"`` (a generator), ``"retrieval"`` (an embedding model) or ``"evaluation"``.
        needs: The step whose columns it reads.
        description: One line, for ``--help`` and the card.
        function: The public function that builds it, as ``module.name`` in :mod:`rare_hf.io`.
        options: The arguments that make this format of that function.
        snippet: The training (or evaluation) call, with ``{load}`` where the records are loaded
            (``{load_corpus}``, ``{load_queries}``, ``{load_qrels}`` for the evaluation set) and
            ``{max_length}`` where a token budget goes.
        aliases: Other names it answers to.
    """

    name: str
    kind: Literal["reasoning", "retrieval", "evaluation"]
    needs: str
    description: str
    function: str
    options: dict[str, Any]
    snippet: str
    aliases: tuple[str, ...] = ()

    def build(
        self, ds: datasets.Dataset, columns: dict[str, Any], **arguments: Any
    ) -> datasets.Dataset | datasets.DatasetDict:
        """The records, from an enriched dataset and the column names its steps used (names of another family
        of formats are ignored); ``arguments`` go to the function as they are."""
        module_name, name = self.function.split(".")
        module = importlib.import_module(f".{module_name}", __package__)
        family = "ReasoningColumns" if module_name == "reasoning_formats" else "RetrievalColumns"
        keys = typing.get_type_hints(getattr(module, family))
        given = {k: v for k, v in columns.items() if k in keys}
        return getattr(module, name)(ds, **self.options, **given, **arguments)


_TRL_SFT = """from trl import SFTConfig, SFTTrainer

train = {load}
trainer = SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=train, args=SFTConfig(max_length={max_length}))
trainer.train()"""

_ST = """from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses

model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
train = {load}
SentenceTransformerTrainer(model=model, train_dataset=train, loss=losses.{loss}(model)).train()"""

FORMATS: tuple[Format, ...] = (
    Format(
        "messages",
        "reasoning",
        "reasoning",
        "TRL conversational SFT: a messages column (system, user with the shown documents, assistant)",
        "reasoning_formats.to_sft",
        {"format": "messages"},
        _TRL_SFT,
    ),
    Format(
        "prompt-completion",
        "reasoning",
        "reasoning",
        "TRL conversational prompt/completion SFT: the loss on the completion only, with any chat template",
        "reasoning_formats.to_sft",
        {"format": "prompt-completion"},
        _TRL_SFT,
    ),
    Format(
        "preference",
        "reasoning",
        "reasoning",
        "TRL preference pairs (prompt, chosen, rejected) from gold-answer rejection sampling: DPO, ORPO",
        "reasoning_formats.to_preference",
        {"format": "pairs"},
        """from trl import DPOConfig, DPOTrainer

pairs = {load}
trainer = DPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=pairs, args=DPOConfig(max_length={max_length}))
trainer.train()""",
        aliases=("dpo",),
    ),
    Format(
        "kto",
        "reasoning",
        "reasoning",
        "TRL unpaired preference rows (prompt, completion, label) from gold-answer rejection sampling: KTO",
        "reasoning_formats.to_preference",
        {"format": "kto"},
        """from trl import KTOConfig, KTOTrainer

rows = {load}
trainer = KTOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=rows, args=KTOConfig(max_length={max_length}))
trainer.train()""",
    ),
    Format(
        "rare",
        "reasoning",
        "reasoning",
        "RARE's own records (instruction, predict, output), for the RARE code's scripts",
        "reasoning_formats.to_sft",
        {"format": "rare"},
        """records = {load}
# instruction: the prompt; predict: <think>...</think><answer>...</answer>; output: the answer
# RARE's training scripts (LLaMA-Factory) read these fields.""",
    ),
    Format(
        "sentence-transformers",
        "retrieval",
        "hard_negatives",
        "sentence-transformers n-tuples (anchor, positive, negative_1..n), plain strings: MultipleNegativesRankingLoss",
        "retrieval_formats.to_sentence_transformers",
        {},
        _ST.replace("{loss}", "MultipleNegativesRankingLoss"),
        aliases=("st",),
    ),
    Format(
        "sentence-transformers-scores",
        "retrieval",
        "hard_negatives",
        "the same n-tuples with a label of BM25 scores [positive, negatives…]: DistillKLDivLoss",
        "retrieval_formats.to_sentence_transformers",
        {"scores": True},
        _ST.replace("{loss}", "DistillKLDivLoss"),
        aliases=("st-scores",),
    ),
    Format(
        "flagembedding",
        "retrieval",
        "hard_negatives",
        "FlagEmbedding (BGE) fine-tuning JSONL: query, pos, neg, pos_scores, neg_scores, prompt",
        "retrieval_formats.to_flag_embedding",
        {},
        """{load}.to_json("bge_train.jsonl")
# torchrun --nproc_per_node 1 -m FlagEmbedding.finetune.embedder.encoder_only.base \\
#   --model_name_or_path BAAI/bge-base-en-v1.5 --train_data bge_train.jsonl \\
#   --output_dir bge-finetuned --knowledge_distillation False""",
        aliases=("bge",),
    ),
    Format(
        "triples",
        "retrieval",
        "hard_negatives",
        "Tevatron passages: query_id, query, positive_passages and negative_passages ({docid, title, text})",
        "retrieval_formats.to_retrieval_triples",
        {},
        """triples = {load}
# Tevatron: python -m tevatron.retriever.driver.train --dataset_name <this repo or a local json> ...""",
        aliases=("tevatron",),
    ),
    Format(
        "beir",
        "evaluation",
        "questions",
        "a BEIR/MTEB test set of held-out documents: corpus (_id, title, text), queries (_id, text), qrels",
        "beir.to_beir",
        {},
        """from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import InformationRetrievalEvaluator

corpus, queries, qrels = {load_corpus}, {load_queries}, {load_qrels}
evaluator = InformationRetrievalEvaluator(
    dict(zip(queries["_id"], queries["text"])), dict(zip(corpus["_id"], corpus["text"])),
    {{q: {{d}} for q, d in zip(qrels["query-id"], qrels["corpus-id"])}}, name="my-domain")
print(evaluator(SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")))""",
    ),
)


def format_named(name: str) -> Format:
    """The format called ``name`` (or one of its aliases); a ``ValueError`` listing them all otherwise."""
    for fmt in FORMATS:
        if name == fmt.name or name in fmt.aliases:
            return fmt
    raise ValueError(f"unknown format {name!r}; choose from {', '.join(f.name for f in FORMATS)}.")


def export(ds: datasets.Dataset, format: str, **columns: Any) -> Exported:
    """Records of one training format, by name (see :data:`FORMATS` and ``rare-hf --help``).

    Args:
        ds: The enriched dataset.
        format: A format name, e.g. ``"sentence-transformers"``, ``"messages"``, ``"preference"``, ``"beir"``.
        **columns: The steps' column names when not the defaults (``input_text_key=...``, ``output_key=...``).

    Returns:
        A ``Dataset``; for ``"beir"`` a ``DatasetDict`` (corpus, queries, qrels).

    Example:
        >>> train = rare_hf.export(ds, "sentence-transformers")
        >>> dpo = rare_hf.export(ds, "preference")
    """
    return format_named(format).build(ds, columns)


def export_all(
    ds: datasets.Dataset,
    formats: Sequence[str],
    *,
    eval_fraction: float | None = None,
    seed: int = 0,
    columns: dict[str, Any] | None = None,
) -> tuple[datasets.DatasetDict, dict[str, Exported]]:
    """Every requested format from one dataset; with ``eval_fraction``, the training formats from the kept
    documents and ``beir`` from the held-out ones (:func:`rare_hf.split_for_eval`).

    Returns:
        The data by split (``train``, and ``test`` when documents were held out) and the records by format name.
    """
    import datasets

    from .beir import split_for_eval

    columns = columns or {}
    names = [format_named(f).name for f in formats]
    as_shown = for_retrievers = datasets.DatasetDict({"train": ds})
    if eval_fraction:
        keys = {k: v for k, v in columns.items() if k in ("input_text_key", "input_hardneg_key")}
        # Retrievers must never see a test document; reasoning prompts must stay as the teacher saw them.
        as_shown = split_for_eval(ds, eval_fraction, seed=seed, drop_held_out_negatives=False, **keys)
        for_retrievers = split_for_eval(ds, eval_fraction, seed=seed, **keys)
        names = list(dict.fromkeys([*names, "beir"]))
    records: dict[str, Exported] = {}
    for name in names:
        fmt = format_named(name)
        if name == "beir":  # the held-out questions, retrieving from every document
            records[name] = fmt.build(as_shown.get("test", ds), columns, corpus=ds)
        else:
            records[name] = fmt.build((as_shown if fmt.kind == "reasoning" else for_retrievers)["train"], columns)
    return as_shown, records


def write_exports(records: dict[str, Exported], folder: Path) -> None:
    """Each format into ``folder``: ``{name}.parquet`` and ``{name}.jsonl``; the evaluation set as a BEIR folder."""
    import datasets

    from ..utils.datasets import quiet_datasets_progress
    from .beir import save_beir

    with quiet_datasets_progress():
        for name, data in records.items():
            if isinstance(data, datasets.DatasetDict):
                save_beir(data, folder / name)
            else:
                data.to_parquet(str(folder / f"{name}.parquet"))
                data.to_json(str(folder / f"{name}.jsonl"), lines=True, force_ascii=False)


def hub_configs(records: dict[str, Exported]) -> dict[str, tuple[str, datasets.Dataset]]:
    """The Hub configuration of each format: name → (split, records). The evaluation set is three
    configurations (``beir-corpus``, ``beir-queries``, ``beir-qrels``) of one ``test`` split each."""
    import datasets

    configs: dict[str, tuple[str, datasets.Dataset]] = {}
    for name, data in records.items():
        if isinstance(data, datasets.DatasetDict):
            configs.update({f"{name}-{part}": ("test", data[part]) for part in data})
        else:
            configs[name] = ("train", data)
    return configs


def snippet(name: str, load: Callable[[str, str], str], max_length: int | None = None) -> str:
    """The training call of a format, loading its records with ``load(config, split)``."""
    fmt = format_named(name)
    parts = {f"load_{p}": load(f"{name}-{p}", "test") for p in ("corpus", "queries", "qrels")}
    text = fmt.snippet.replace("{max_length}", str(max_length) if max_length else "None")
    return text.format(load=load(name, "train"), **parts)


def max_length_for(records: datasets.Dataset) -> int:
    """A ``max_length`` that truncates no record of a chat format: its longest record in tokens (estimated at
    four characters each), rounded up to 256."""

    from ..text.tokens import estimate_tokens
    from ..utils.datasets import column_values

    def tokens(turns: list[dict[str, str]] | None) -> int:
        return sum(estimate_tokens(t["content"]) for t in turns or [])

    shared = [c for c in ("messages", "prompt") if c in records.column_names]
    replies = [c for c in ("completion", "chosen", "rejected") if c in records.column_names]
    values = {c: column_values(records, c) for c in shared + replies}
    longest = max(
        (
            sum(tokens(values[c][i]) for c in shared) + max((tokens(values[c][i]) for c in replies), default=0)
            for i in range(len(records))
        ),
        default=0,
    )
    return max(256, math.ceil(longest / 256) * 256)

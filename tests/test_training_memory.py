"""The peak-memory estimate of a training step: hand arithmetic, what autograd keeps, and the settings it picks."""

import importlib.util
import re
from pathlib import Path

import pytest

from rerank_audit.models.batching import _resident_bytes
from rerank_audit.training.memory import USABLE_SHARE, estimate_training_memory, plan_training_memory
from rerank_audit.training.settings import LoraSettings, TrainingSettings

# Llama 3 8B's config.json: hidden 4096, 32 layers, 32 heads of 128, 8 key/value heads, MLP 14336, vocabulary 128256, untied.
LLAMA_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                vocab_size=128256, tie_word_embeddings=False)
# The autograd comparison: the estimate may exceed what autograd keeps by at most this share (it never falls short).
MARGIN = 0.10
SFT_8B = TrainingSettings(batch_size=8, max_length=224, lora=LoraSettings(r=16, dropout=0.05), dtype="bfloat16")


def test_an_8b_llama_with_lora_r16_at_8_by_224_tokens_is_the_hand_arithmetic():
    # parameters: embeddings + lm_head 2 x 128256 x 4096 = 1,050,673,152; per layer q 4096^2 + k, v 2 x 4096 x 1024 + o 4096^2
    # = 41,943,040 and MLP 3 x 4096 x 14336 = 176,160,768: x 32 layers = 6,979,321,856; 8,029,995,008 in all (norms left out)
    # weights in bfloat16: 2 bytes each
    weights = 8_029_995_008 * 2
    # LoRA r 16 per layer: q 16 x 8192 + k, v 16 x 5120 + o 16 x 8192 + gate, up, down 3 x 16 x 18432 = 1,310,720; x 32 layers;
    # float32 weights, gradients and AdamW's two moments: 4 x 4 bytes
    trainable = 1_310_720 * 32 * 16
    # per token and layer, bf16 (2 bytes): the norms' inputs, rotated queries, keys, values, attention output, gate, up and
    # activated gate (4 x 4096 + 2 x 1024 + 3 x 14336) x 2 = 122,880 (the frozen linears keep no input, and LoRA's A reads a
    # float32 cast: the norms' outputs and the MLP product are not kept); the norms' float32 inputs 2 x 4 x 4096 = 32,768. LoRA: PEFT's adapters are float32 over the bf16 base and it casts each target's input to float32, so the
    # targets' inputs (q, k, v, gate, up read 4096 each, o 4096, down 14336: 38,912 elements) cost 4 bytes each after
    # dropout plus a 1-byte CUDA mask: 38,912 x 5 = 194,560; the seven rank-16 products in float32: 7 x 16 x 4 = 448
    per_layer = 122_880 + 32_768 + 194_560 + 448  # 350,656
    # after the last layer, per token: the final norm's input and output 2 x 4096 x 2 and its float32 copy 4 x 4096
    final = 16_384 + 16_384
    tokens = 8 * 224
    # TRL's chunked log-prob kernel: two float32 tiles of 1792 tokens x 32768 vocabulary entries
    logits = 2 * 4 * 1792 * 32768
    estimate = estimate_training_memory(LLAMA_8B, SFT_8B, 1, weights_dtype="bfloat16", autocast=False)
    assert (estimate.weights, estimate.trainable, estimate.logits, estimate.reference) == (weights, trainable, logits, 0)
    assert estimate.activations == tokens * (32 * per_layer + final)  # 20,166,737,920
    assert estimate.total == pytest.approx(37_367_578_624, rel=1e-12)  # 16,059,990,016 + 671,088,640 + 469,762,048 + activations

    # activation checkpointing keeps each layer's bf16 input (4096 x 2 bytes) and rebuilds one layer at a time
    checkpointed = estimate_training_memory(LLAMA_8B, SFT_8B, 1, weights_dtype="bfloat16", autocast=False, checkpointing=True)
    assert checkpointed.activations == tokens * (32 * 4096 * 2 + per_layer + final)  # 1,156,857,856
    assert checkpointed.total == pytest.approx(18_357_698_560, rel=1e-12)

    # on the CPU dropout keeps its mask in the input's dtype: 4 bytes, not 1
    cpu = estimate_training_memory(LLAMA_8B, SFT_8B, 1, weights_dtype="bfloat16", autocast=False, device="cpu")
    assert cpu.activations == tokens * (32 * (per_layer + 38_912 * 3) + final)

    # QLoRA: the linears in NF4 (0.5 byte + a double-quantized absmax per 64: (1 + 4/256) / 64), embeddings in bf16;
    # TRL casts the adapter to bfloat16 over a quantized base: it, its gradients and moments 2 bytes each, and the targets'
    # inputs stay bf16 (no cast, but dropout makes new ones): dropout output 2 + mask 1 = 38,912 x 3 = 116,736 and rank products
    # 7 x 16 x 2 = 224 per token and layer
    qlora = estimate_training_memory(LLAMA_8B, SFT_8B, 1, weights_dtype="bfloat16", autocast=False, checkpointing=True, quantization="4bit")
    assert qlora.weights == pytest.approx(1_050_673_152 * 2 + 6_979_321_856 * (0.5 + 1.015625 / 64), rel=1e-12)  # 5,701,763,072
    assert qlora.trainable == 1_310_720 * 32 * 8
    qlora_per_layer = 122_880 + 32_768 + 116_736 + 224  # 272,608
    assert qlora.activations == tokens * (32 * 4096 * 2 + qlora_per_layer + final)  # 1,016,995,840
    assert qlora.total == pytest.approx(5_701_763_072 + 335_544_320 + 1_016_995_840 + 469_762_048, rel=1e-12)


def test_dpo_counts_chosen_and_rejected_and_a_reference_copy_only_without_lora():
    with_lora = estimate_training_memory(LLAMA_8B, SFT_8B, 2, weights_dtype="bfloat16", autocast=False)
    sft = estimate_training_memory(LLAMA_8B, SFT_8B, 1, weights_dtype="bfloat16", autocast=False)
    assert with_lora.tokens == 2 * sft.tokens and with_lora.activations == 2 * sft.activations and with_lora.reference == 0
    full = estimate_training_memory(LLAMA_8B, SFT_8B.but(lora=LoraSettings(enabled=False)), 2, weights_dtype="bfloat16", autocast=False,
                                    reference_copy=True)
    # the reference: a second copy of the bf16 weights; training every weight: its gradient and two moments in bf16
    assert (full.reference, full.trainable) == (8_029_995_008 * 2, 3 * 8_029_995_008 * 2)


def small_config():
    """A Llama shape whose step needs about 2 GB without activation checkpointing and a tenth of it with."""
    return dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4, intermediate_size=2816,
                vocab_size=8192, tie_word_embeddings=True)


def plan(settings, memory_mb, method="sft"):
    return plan_training_memory(method, small_config(), settings, 1, reference_copy=False, logits="chunked", device="cpu",
                                memory_mb=memory_mb)


def test_auto_checkpointing_turns_on_only_when_the_step_would_not_fit():
    settings = TrainingSettings(batch_size=16, max_length=256, bf16=False, quantization="auto")
    off = estimate_training_memory(small_config(), settings, 1, weights_dtype="float32", autocast=False, device="cpu")
    on = estimate_training_memory(small_config(), settings, 1, weights_dtype="float32", autocast=False, checkpointing=True, device="cpu")
    assert on.total < off.total / 2
    room = lambda needed: int((_resident_bytes() + needed / USABLE_SHARE) / 2**20) + 1  # noqa: E731  the job's mem_mb that leaves `needed`
    roomy = plan(settings, room(off.total * 1.05))
    assert (roomy.settings.activation_checkpointing, roomy.settings.quantization) == (False, "none")
    tight = plan(settings, room((off.total + on.total) / 2))
    assert (tight.settings.activation_checkpointing, tight.estimate.total) == (True, on.total)
    forced = plan(settings.but(activation_checkpointing=False), room(off.total * 1.05))
    assert forced.settings.activation_checkpointing is False


def test_a_step_that_fits_nowhere_is_an_error_naming_the_keys_to_change():
    with pytest.raises(ValueError) as error:
        plan(TrainingSettings(batch_size=16, max_length=256, bf16=False), memory_mb=int(_resident_bytes() / 2**20) + 100)
    for key in ("train.methods.sft.batch_size", "gradient_accumulation", "model.quantization: 4bit", "mem_mb"):
        assert key in str(error.value)
    assert "activation_checkpointing" not in str(error.value)  # auto tried it already


def test_auto_quantization_never_quantizes_whatever_the_memory():
    """Quantizing changes the trained model: auto trains the weights as loaded, and a step that does not fit is an error."""
    settings = TrainingSettings(batch_size=16, max_length=256, bf16=False)  # quantization auto, checkpointing auto
    assert plan(settings, memory_mb=None).settings.quantization == "none"
    with pytest.raises(ValueError, match="model.quantization: 4bit"):
        plan(settings, memory_mb=int(_resident_bytes() / 2**20) + 100)


def test_quantization_on_a_machine_without_a_gpu_or_bitsandbytes_warns_at_check_and_stops_the_job(caplog):
    """The submitting machine may lack bitsandbytes that the GPU nodes have: the config check warns; the job's own check stops it."""
    from rerank_audit.config import check_config, load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    config["model"]["quantization"] = "4bit"
    check_config(config)
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "model.quantization 4bit: the bitsandbytes package is not installed" in caplog.text
    with pytest.raises(ValueError, match=r"model\.quantization 4bit: .*(bitsandbytes package is not installed|this job sees none)"):
        plan(TrainingSettings(quantization="4bit"), memory_mb=None)


@pytest.mark.slow
@pytest.mark.parametrize("weights, bf16, dropout", [("float32", False, 0.05), ("float32", False, 0.0), ("float32", True, 0.05),
                                                     ("bfloat16", False, 0.05), ("bfloat16", False, 0.0)])
def test_the_activation_estimate_covers_what_autograd_keeps_for_a_real_sft_step(weights, bf16, dropout, tiny_lm_dir, tmp_path):
    """Measured on the CPU: the bytes of every tensor autograd saves for the backward pass of TRL's SFT loss (hooks
    on the saved tensors, each storage once, parameters left out), on a 23M-parameter Llama with LoRA, 8 x 128 tokens.

    Those tensors are what a step holds at its peak, the end of the forward, besides weights and optimizer states
    (counted exactly), so they test the estimate's per-token accounting; autocast's bfloat16 weight copies are
    among them. The estimate must never fall short, and exceed by at most MARGIN: measured on 2026-12-07 it is
    0.7% to 7.9% above what autograd keeps (float32, bf16 autocast and bf16 weights, with and without dropout)."""
    import pandas as pd
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rerank_audit.text import prompts
    from rerank_audit.training.build import build_trainer
    from rerank_audit.training.fit_documents import fit_documents

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    config = LlamaConfig(vocab_size=8192, hidden_size=512, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
                         num_key_value_heads=4, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    yes, no = prompts.pointwise_completions(tokenizer)
    document = "Monthly mean sea level at Venice and Trieste tide gauges, 1990 to 2024. " * 20  # cut to 128 tokens
    data = pd.DataFrame({"query_id": [f"q{i}" for i in range(8)], "doc_id": [f"d{i}" for i in range(8)], "label": [1, 0] * 4,
                         "completion": [yes, no] * 4, "prompt": [prompts.pointwise_prompt(tokenizer, f"sea level {i}", document) for i in range(8)]})
    settings = TrainingSettings(batch_size=8, max_length=128, max_steps=1, bf16=bf16, activation_checkpointing=False, quantization="none",
                                lora=LoraSettings(dropout=dropout), dtype=weights)
    fitted, _ = fit_documents("sft", data, tokenizer, settings.max_length)
    trainer = build_trainer("sft", str(tmp_path / "model"), fitted, tokenizer, tmp_path / "checkpoints", settings, seed=0)
    batch = next(iter(trainer.get_train_dataloader()))
    assert tuple(batch["input_ids"].shape) == (8, 128)
    parameters = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        trainer.compute_loss(trainer.model, batch)
    assert next(trainer.model.parameters()).dtype == getattr(torch, weights)
    estimate = estimate_training_memory(config.to_dict(), settings, 1, weights_dtype=weights, autocast=bf16, device="cpu")
    plain = estimate_training_memory(config.to_dict(), settings, 1, weights_dtype=weights, autocast=False, device="cpu")
    expected = estimate.activations + (estimate.weights - plain.weights)  # + autocast's weight copies
    measured = sum(saved.values())
    print(f"RATIO {weights} bf16={bf16} dropout={dropout}: estimate {expected / 1e6:.0f} MB, autograd {measured / 1e6:.0f} MB")
    assert measured <= expected <= (1 + MARGIN) * measured


def test_the_model_keys_reach_every_methods_training_settings_and_auto_checkpointing_is_none():
    from rerank_audit.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    config["model"] |= {"quantization": "8bit", "attn_implementation": "eager"}
    config["train"]["defaults"]["activation_checkpointing"] = "auto"
    config["train"]["methods"]["dpo"] = {"beta": 0.1, "activation_checkpointing": True}
    sft, dpo = (TrainingSettings.for_method(config, method) for method in ("sft", "dpo"))
    assert (sft.quantization, sft.attn_implementation, sft.activation_checkpointing) == ("8bit", "eager", None)
    assert (dpo.quantization, dpo.attn_implementation, dpo.activation_checkpointing) == ("8bit", "eager", True)
    assert TrainingSettings.from_dict(sft.as_dict()) == sft  # the rule's params rebuild it

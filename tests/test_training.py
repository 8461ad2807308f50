"""Training: examples from qrels + known negatives, and the four TRL trainers on a tiny model.

The hand-made collection (relevance threshold 2):

    q1  qrels d5:3  d1:2  d3:1 (partly relevant: neither positive nor negative)  d2:0  d7:0  d8:0
        BM25  d4 d2 d3 d1 d6 d7 d5   (d8 judged but not retrieved; d6 unjudged)
    q2  qrels d4:2  d1:0  d6:0      BM25  d4 d1 d2 d6
    q3  qrels d1:0                  BM25  d1 d2      (no relevant document: no example)
    q4  qrels d5:2                  BM25  d5 d3 d6   (no judged non-relevant document)

Relevant to some query (grade > 0): d1 d3 d4 d5, never a negative. So the positives are
q1: d5, d1 (highest grade first), q2: d4, q4: d5; the negatives are the judged non-relevant
documents, retrieved ones by BM25 rank, then the others by id: q1: d2, d7, d8; q2: d6 (d1 is
judged non-relevant to q2 but relevant to q1); q4: none. With unjudged negatives on, the
unjudged BM25 candidates follow: q1: + d6 (d4 is relevant to q2); q2: + d2; q4: d6.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from rerank_audit.data import schemas
from rerank_audit.io import read_table, write_table
from rerank_audit.text import prompts
from rerank_audit.training.examples import (
    NoNegativesError,
    answer_pairs,
    negative_summary,
    preference_pairs,
    query_examples,
    sft_examples,
)
from rerank_audit.models.settings import ScoringSettings

REPO = Path(__file__).resolve().parents[1]
# TRL 1.16 itself calls a transformers 5.24 deprecated alias on every DPO step; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

CORPUS = pd.DataFrame(
    {
        "doc_id": ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"],
        "title": ["Glacier mass", "", "Snow cover", "Sea ice", "Ice cores", "Permafrost", "Tundra", "Lakes"],
        "text": ["Alpine glaciers lose mass.", "Dust storms.", "Snow in the Alps.", "Arctic sea ice.", "Antarctic cores.",
                 "Thawing soil.", "Shrubs spread north.", "Lake ice dates."],
    }
)
QUERIES = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "text": ["glacier ice loss", "sea ice extent", "dust", "ice cores"]})
QRELS = pd.DataFrame(
    [("q1", "d5", 3), ("q1", "d1", 2), ("q1", "d3", 1), ("q1", "d2", 0), ("q1", "d7", 0), ("q1", "d8", 0),
     ("q2", "d4", 2), ("q2", "d1", 0), ("q2", "d6", 0), ("q3", "d1", 0), ("q4", "d5", 2)],
    columns=["query_id", "doc_id", "relevance"],
)
RANKED = {"q1": ["d4", "d2", "d3", "d1", "d6", "d7", "d5"], "q2": ["d4", "d1", "d2", "d6"], "q3": ["d1", "d2"], "q4": ["d5", "d3", "d6"]}
RUN = pd.DataFrame(
    [(query_id, doc_id, 10.0 - rank, rank) for query_id, docs in RANKED.items() for rank, doc_id in enumerate(docs, 1)],
    columns=["query_id", "doc_id", "score", "rank"],
)
TRAIN = ["q2", "q1", "q3", "q4"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model gains nothing from more threads, and on a shared CPU they oversubscribe it (10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def answers(tokenizer):
    """(yes, no): the one-token answers the tiny tokenizer is trained on."""
    return prompts.pointwise_completions(tokenizer)


def make_sft(tokenizer, train=TRAIN, **options):
    settings = dict(negatives_per_positive=1, max_positives_per_query=2, relevance_threshold=2, seed=0) | options
    return sft_examples(CORPUS, QUERIES, QRELS, RUN, train, tokenizer, **settings)


def make_pairs(tokenizer, train=TRAIN, **options):
    settings = dict(pairs_per_query=3, relevance_threshold=2, seed=0) | options
    return preference_pairs(CORPUS, QUERIES, QRELS, RUN, train, tokenizer, **settings)


def rows(frame, columns):
    return [tuple(row) for row in frame[columns].itertuples(index=False)]


# ------------------------------------------------------------------ examples


def test_sft_examples_are_relevant_docs_then_judged_non_relevant_ones_by_bm25_rank(tokenizer, answers):
    YES, NO = answers
    examples = make_sft(tokenizer)
    assert rows(examples, ["query_id", "doc_id", "label"]) == [
        ("q2", "d4", 1), ("q2", "d6", 0),
        ("q1", "d5", 1), ("q1", "d1", 1), ("q1", "d2", 0), ("q1", "d7", 0),
        ("q4", "d5", 1),
    ]
    assert examples.completion.tolist() == [YES, NO, YES, YES, NO, NO, YES]
    assert examples.prompt[0] == prompts.pointwise_prompt(tokenizer, "sea ice extent", "Sea ice: Arctic sea ice.")
    assert examples.prompt[4] == prompts.pointwise_prompt(tokenizer, "glacier ice loss", "Dust storms.")


def test_a_document_relevant_to_another_query_is_never_a_negative(tokenizer):
    # d4 is BM25's top candidate for q1 and relevant to q2; d1 is judged non-relevant to q2 but relevant to q1.
    for unjudged in (False, True):
        examples = make_sft(tokenizer, negatives_per_positive=5, unjudged_negatives=unjudged)
        pairs = make_pairs(tokenizer, pairs_per_query=9, unjudged_negatives=unjudged)
        negatives = set(rows(examples[examples.label == 0], ["query_id", "doc_id"])) | set(rows(pairs, ["query_id", "rejected_doc_id"]))
        assert ("q1", "d4") not in negatives and ("q2", "d1") not in negatives


def test_judged_non_relevant_documents_come_first_retrieved_by_rank_then_the_rest_by_id(tokenizer):
    pairs = make_pairs(tokenizer, pairs_per_query=9)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id"]) == [
        ("q2", "d4", "d6"),
        ("q1", "d5", "d2"), ("q1", "d1", "d7"), ("q1", "d5", "d8"),
    ]


def test_unjudged_candidates_are_negatives_only_when_switched_on_and_after_the_judged_ones(tokenizer):
    assert "d6" not in set(make_sft(tokenizer, negatives_per_positive=5).query("query_id == 'q1'").doc_id)
    pairs = make_pairs(tokenizer, pairs_per_query=9, unjudged_negatives=True)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id"]) == [
        ("q2", "d4", "d6"), ("q2", "d4", "d2"),
        ("q1", "d5", "d2"), ("q1", "d1", "d7"), ("q1", "d5", "d8"), ("q1", "d1", "d6"),
        ("q4", "d5", "d6"),
    ]


def test_a_budget_without_any_usable_negative_is_an_error_that_names_the_switch(tokenizer):
    with pytest.raises(NoNegativesError, match="none of the 1 training queries .* train.unjudged_negatives: true"):
        make_sft(tokenizer, train=["q4"])
    with pytest.raises(NoNegativesError, match="judged non-relevant documents"):
        make_pairs(tokenizer, train=["q4", "q3"])
    assert rows(make_pairs(tokenizer, train=["q4"], unjudged_negatives=True), ["chosen_doc_id", "rejected_doc_id"]) == [("d5", "d6")]


def test_negative_summary_counts_negatives_by_kind_and_queries_without_one(tokenizer):
    examples = make_sft(tokenizer, negatives_per_positive=5, unjudged_negatives=True)
    # q2: d6 judged, d2 unjudged; q1: d2 d7 d8 judged, d6 unjudged; q4: d6 unjudged; q3 has no relevant document
    assert negative_summary(examples, QRELS, TRAIN, 2) == {
        "queries": 4, "queries_without_positive": 1, "queries_without_negative": 0, "judged_non_relevant": 4, "unjudged": 3,
    }
    assert negative_summary(make_pairs(tokenizer), QRELS, TRAIN, 2) == {
        "queries": 4, "queries_without_positive": 1, "queries_without_negative": 1, "judged_non_relevant": 4, "unjudged": 0,
    }


def test_sft_examples_cap_positives_and_scale_negatives_with_them(tokenizer):
    examples = make_sft(tokenizer, max_positives_per_query=1, negatives_per_positive=2)
    assert rows(examples, ["query_id", "doc_id", "label"]) == [
        ("q2", "d4", 1), ("q2", "d6", 0),
        ("q1", "d5", 1), ("q1", "d2", 0), ("q1", "d7", 0),
        ("q4", "d5", 1),
    ]


def test_sft_examples_are_deterministic_and_fit_their_schema(tokenizer, tmp_path):
    examples = make_sft(tokenizer, relevance_threshold=1, seed=7)
    pd.testing.assert_frame_equal(examples, make_sft(tokenizer, relevance_threshold=1, seed=7))
    write_table(examples, tmp_path / "sft.parquet", schemas.SFT_EXAMPLES)
    pd.testing.assert_frame_equal(read_table(tmp_path / "sft.parquet", schemas.SFT_EXAMPLES), examples, check_dtype=False)


def test_preference_pairs_put_each_negative_under_the_positives_in_turn(tokenizer, tmp_path):
    pairs = make_pairs(tokenizer)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id"]) == [
        ("q2", "d4", "d6"),
        ("q1", "d5", "d2"), ("q1", "d1", "d7"), ("q1", "d5", "d8"),
    ]
    assert pairs.prompt[0] == prompts.document_prompt(tokenizer, "sea ice extent")
    assert (pairs.chosen[0], pairs.rejected[0]) == ("Sea ice: Arctic sea ice.", "Permafrost: Thawing soil.")
    write_table(pairs, tmp_path / "pairs.parquet", schemas.PREFERENCE_PAIRS)


def test_answer_pairs_prefer_the_correct_answer_on_the_same_prompt(tokenizer, answers, tmp_path):
    YES, NO = answers
    examples = make_sft(tokenizer)
    pairs = answer_pairs(examples)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id", "chosen", "rejected"]) == [
        ("q2", "d4", "d4", YES, NO), ("q2", "d6", "d6", NO, YES),
        ("q1", "d5", "d5", YES, NO), ("q1", "d1", "d1", YES, NO),
        ("q1", "d2", "d2", NO, YES), ("q1", "d7", "d7", NO, YES),
        ("q4", "d5", "d5", YES, NO),
    ]
    assert pairs.prompt.tolist() == examples.prompt.tolist()
    write_table(pairs, tmp_path / "answers.parquet", schemas.PREFERENCE_PAIRS)


QLM_TEMPLATE = "Record: {document}\nA question it answers:"


def test_query_examples_are_each_relevant_document_prompt_then_its_query(tokenizer):
    # positives only (grade >= 2), highest grade first, capped per query; q3 has none; no negatives needed
    examples = query_examples(CORPUS, QUERIES, QRELS, RUN, TRAIN, template=QLM_TEMPLATE, max_positives_per_query=1,
                              relevance_threshold=2, seed=0)
    texts = dict(zip(CORPUS.doc_id, [prompts.document_text(t, x) for t, x in zip(CORPUS.title, CORPUS.text)]))
    assert list(zip(examples.query_id, examples.doc_id)) == [("q2", "d4"), ("q1", "d5"), ("q4", "d5")]
    for row in examples.itertuples():
        assert row.prompt == f"Record: {texts[row.doc_id]}\nA question it answers:"
        assert row.completion == " " + dict(zip(QUERIES.query_id, QUERIES.text))[row.query_id]
        assert row.document == texts[row.doc_id]
    assert examples.columns.tolist() == ["query_id", "doc_id", "document", "prompt", "completion"]


def test_query_examples_reject_a_template_without_the_document_field():
    with pytest.raises(ValueError, match="write \\{document\\} exactly once"):
        query_examples(CORPUS, QUERIES, QRELS, RUN, TRAIN, template="Passage:", max_positives_per_query=1, relevance_threshold=2, seed=0)


def test_unknown_training_query_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="q9"):
        sft_examples(CORPUS, QUERIES, QRELS, RUN, ["q9"], tokenizer, negatives_per_positive=1,
                     max_positives_per_query=1, relevance_threshold=1, seed=0)


# ------------------------------------------------------------------ trainers

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def hyper(**overrides):
    from rerank_audit.training.settings import TrainingSettings

    settings = dict(learning_rate=1e-3, epochs=1, max_steps=2, batch_size=2, gradient_accumulation=1, beta=0.1,
                    lora={"enabled": False}, max_length=256, save_steps=2, logging_steps=1)
    return TrainingSettings.from_dict(settings | overrides)


def training_data(method, tokenizer):
    if method == "sft":
        return make_sft(tokenizer)
    if method == "dpo":
        return answer_pairs(make_sft(tokenizer))
    return make_pairs(tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, lora",
    [("sft", False), ("sft", True), ("dpo", False), ("dpo", True), ("dpo_pairs", False), ("dpo_pairs", True), ("reward", False), ("reward", True)],
)
def test_each_trainer_writes_a_loadable_model_and_its_training_config(method, lora, tiny_lm_dir, tokenizer, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rerank_audit.training.trainers import train_reranker

    data = training_data(method, tokenizer)
    record = train_reranker(method, tiny_lm_dir, data, tmp_path, hyper(lora=LORA if lora else {"enabled": False}), seed=0)

    written = json.loads((tmp_path / "training_config.json").read_text())
    assert written == record
    assert (written["method"], written["steps"], written["train_samples"], written["seed"]) == (method, 2, len(data), 0)
    assert written["versions"]["trl"] == "1.16.0" and written["resumed_from"] is None
    log = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert (written["loss_first"], written["loss_last"], written["truncated_documents"]) == (losses[0], losses[1], 0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template == tokenizer.chat_template
    if method == "reward":  # always a full model: a LoRA adapter is merged in
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
        assert (model.config.num_labels, model.config.pad_token_id, written["adapter"]) == (1, tokenizer.pad_token_id, False)
    elif lora:
        model = AutoPeftModelForCausalLM.from_pretrained(tmp_path)
        assert written["adapter"] and (tmp_path / "adapter_config.json").is_file()
    else:
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
        assert not written["adapter"]


def test_checkpoints_of_another_run_are_discarded_not_resumed(tiny_lm_dir, tokenizer, tmp_path, caplog):
    from rerank_audit.training.trainers import train_reranker

    train_reranker("sft", tiny_lm_dir, make_sft(tokenizer), tmp_path, hyper(lora=LORA), seed=0)
    record = train_reranker("sft", tiny_lm_dir, make_sft(tokenizer), tmp_path, hyper(learning_rate=1e-2), seed=0)
    assert (record["resumed_from"], record["steps"]) == (None, 2)
    assert "checkpoints of a different run" in caplog.text
    # the first run's adapter is gone: the folder holds the full model only
    assert not (tmp_path / "adapter_config.json").exists() and (tmp_path / "model.safetensors").exists()


def test_same_seed_and_data_train_the_same_weights(tiny_lm_dir, tokenizer, tmp_path):
    from safetensors.torch import load_file

    from rerank_audit.training.trainers import train_reranker

    for run in ("a", "b"):
        train_reranker("reward", tiny_lm_dir, make_pairs(tokenizer), tmp_path / run, hyper(max_steps=3, batch_size=2), seed=3)
    first, second = (load_file(tmp_path / run / "model.safetensors") for run in ("a", "b"))
    assert all((first[name] == second[name]).all() for name in first)


def test_bad_hyperparameters_fail_before_training(tiny_lm_dir, tokenizer, tmp_path):
    from rerank_audit.training.trainers import train_reranker

    with pytest.raises(ValueError, match="unknown \\['lr', 'lora.rank'\\]"):
        hyper(lr=1.0, lora={"rank": 4})
    with pytest.raises(ValueError, match="dpo_pairs: its dpo trainer requires the settings \\['beta'\\], which are not set"):
        train_reranker("dpo_pairs", tiny_lm_dir, make_pairs(tokenizer), tmp_path, hyper(beta=None), seed=0)
    with pytest.raises(ValueError, match="lacks the columns \\['completion'\\]"):
        train_reranker("sft", tiny_lm_dir, make_pairs(tokenizer), tmp_path, hyper(), seed=0)


def build_toy(base, args, data, tokenizer, peft_config, settings, template, scoring):
    """The toy trainer kind's build function (its registry entry names it "test_training:build_toy")."""
    from datasets import Dataset
    from trl import SFTConfig

    dataset = Dataset.from_pandas(data[["prompt", "completion"]].reset_index(drop=True), preserve_index=False)
    return toy_trainer_class()(model=base, args=SFTConfig(**args, completion_only_loss=True), train_dataset=dataset,
                               processing_class=tokenizer, peft_config=peft_config)


@functools.cache
def toy_trainer_class():
    from trl import SFTTrainer

    class ToyTrainer(SFTTrainer):
        """SFT with its own compute_loss: half of SFT's loss, and a count of the calls."""

        calls = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ToyTrainer.calls += 1
            return 0.5 * super().compute_loss(model, inputs, return_outputs=False, num_items_in_batch=num_items_in_batch)

    return ToyTrainer


@pytest.fixture
def toy_trainer_kind(monkeypatch):
    """A new trainer kind as docs/extending.md adds one: its Trainer class, one entry of the trainer
    registry, and a method entry that uses it (both removed after the test)."""
    from rerank_audit import methods
    from rerank_audit import trainer_kinds as registry

    monkeypatch.setitem(registry.TRAINERS, "toy", registry.TrainerKind("toy", f"{__name__}:build_toy", registry.CAUSAL_LM,
                                                                       "AutoModelForCausalLM", tables=("sft_examples",)))
    monkeypatch.setitem(methods.REGISTRY, "toy_sft", methods.Method("toy_sft", family="yesno", display="toy", trainer="toy",
                                                                    training_table="sft_examples", untrained="zeroshot"))
    toy_trainer_class().calls = 0  # a class attribute: counted afresh in every test that uses it
    return toy_trainer_class()


def test_a_new_trainer_kind_is_one_registry_entry_and_its_trainer_class(toy_trainer_kind, tiny_lm_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from rerank_audit.config import check_config, load_config
    from rerank_audit.training.trainers import train_reranker

    check_config(load_config(REPO / "config" / "config.yaml"))  # the registries, with the toy entries, pass the parse-time check
    record = train_reranker("toy_sft", tiny_lm_dir, make_sft(tokenizer), tmp_path, hyper(max_steps=1, batch_size=2), seed=0)
    # one optimizer step of batch 2, no accumulation: ToyTrainer's loss ran once, and nothing else trained
    assert (toy_trainer_kind.calls, record["method"], record["steps"], record["model_class"]) == (1, "toy_sft", 1, "AutoModelForCausalLM")
    assert not record["adapter"] and AutoModelForCausalLM.from_pretrained(tmp_path).config.architectures == ["LlamaForCausalLM"]


# ------------------------------------------------------------------ documents cut to fit, reward pad

LONG_DOCUMENT = "Alpine glaciers lose mass in hot summers. " * 30
MAX_LENGTH = 96


def build_trainer(method, base, data, tmp_path, **overrides):
    """The TRL trainer train_reranker would train, on the documents fit_documents cut, and that count."""
    from rerank_audit.training.build import build_trainer
    from rerank_audit.training.fit_documents import fit_documents

    tok = AutoTokenizer.from_pretrained(base)
    settings = hyper(**{"max_length": MAX_LENGTH, "bf16": False} | overrides)
    fitted, truncated = fit_documents(method, data, tok, settings.max_length)
    return build_trainer(method, str(base), fitted, tok, tmp_path / "checkpoints", settings, seed=0), truncated


@pytest.mark.parametrize("method", ["sft", "dpo", "dpo_pairs", "reward", "qlm_lce"])
def test_every_training_setting_reaches_the_trl_arguments(method, tiny_lm_dir, tokenizer, tmp_path):
    """Each TrainingSettings field with a distinctive value (not a TRL default), read back from the built trainer."""
    from rerank_audit.models.settings import ScoringSettings
    from rerank_audit.training.build import build_trainer as build

    lce = method == "qlm_lce"
    data = (pd.DataFrame({"group": [0, 0, 1, 1], "position": [0, 1, 0, 1], "query": ["snow alps", "snow alps", "sea level", "sea level"],
                          "document": ["Snow depth in the Alps.", "River discharge.", "Sea level at Venice.", "Snow depth."]})
            if lce else training_data(method if method != "dpo_pairs" else "reward", tokenizer))
    settings = hyper(learning_rate=3.7e-4, epochs=3, max_steps=7, batch_size=3, gradient_accumulation=5, max_length=123, save_steps=11,
                     logging_steps=13, beta=0.37 if method in ("dpo", "dpo_pairs") else None, temperature=0.7 if lce else None, bf16=True,
                     activation_checkpointing=True, lora={"enabled": True, "r": 6, "alpha": 12, "dropout": 0.0, "target_modules": ["q_proj"]},
                     attn_implementation="eager")
    trainer = build(method, str(tiny_lm_dir), data, tokenizer, tmp_path, settings, seed=29, scoring=ScoringSettings(max_length=77))
    args = trainer.args
    assert args.model_init_kwargs["attn_implementation"] == "eager" == trainer.model.config._attn_implementation  # transformers' default: sdpa
    assert (args.learning_rate, args.num_train_epochs, args.max_steps, args.per_device_train_batch_size) == (3.7e-4, 3, 7, 3)
    assert (args.gradient_accumulation_steps, args.save_steps, args.logging_steps, args.seed, args.data_seed) == (5, 11, 13, 29, 29)
    assert args.bf16 and args.activation_checkpointing and args.model_init_kwargs["dtype"] == "float32"
    assert args.max_length == (77 if lce else 123)  # lce trains on its scorer's tokens: rerank.max_length
    assert getattr(args, "beta", None) == (0.37 if method in ("dpo", "dpo_pairs") else None)
    assert getattr(args, "temperature", None) == (0.7 if lce else None)
    lora = trainer.model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, set(lora.target_modules)) == (6, 12, {"q_proj"})
    assert str(lora.task_type) in ("SEQ_CLS", "TaskType.SEQ_CLS") if method == "reward" else str(lora.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM")


def test_quantization_reaches_trls_model_arguments_as_qlora_and_none_loads_plain_weights(tmp_path):
    """model.quantization 4bit: NF4, double quantization, bf16 compute (QLoRA as TRL and PEFT document it); 8bit: LLM.int8.
    The trainer itself is not built: bitsandbytes quantizes on a GPU (bench/gpu_check.py trains 4-bit there)."""
    from rerank_audit.training.build import trainer_arguments

    def quantization_config(quantization):
        config = trainer_arguments(hyper(quantization=quantization, bf16=True, dtype="bfloat16"), tmp_path, seed=0)["model_init_kwargs"].get("quantization_config")
        return config if config is None else config.to_dict()

    qlora = quantization_config("4bit")
    assert (qlora["load_in_4bit"], qlora["bnb_4bit_quant_type"], qlora["bnb_4bit_use_double_quant"]) == (True, "nf4", True)
    assert qlora["bnb_4bit_compute_dtype"] in ("bfloat16", "float16")  # float16 on a GPU without bf16 units
    assert quantization_config("8bit")["load_in_8bit"] is True
    assert quantization_config("none") is None and quantization_config("auto") is None  # auto unresolved (no memory plan): none


def long_document_data(method, tokenizer):
    """Two training rows of ``method`` (sft, dpo or reward) whose second document is far longer than MAX_LENGTH."""
    query, short = "glacier ice loss", "Sea ice: Arctic sea ice."
    YES, NO = prompts.pointwise_completions(tokenizer)
    if method == "reward":
        prompt = prompts.document_prompt(tokenizer, query)
        return pd.DataFrame({"query_id": ["q1", "q1"], "prompt": [prompt, prompt], "chosen": [short, LONG_DOCUMENT],
                             "rejected": ["Dust storms.", "Dust storms."], "chosen_doc_id": ["d4", "d9"], "rejected_doc_id": ["d2", "d2"]})
    sft = pd.DataFrame({"query_id": ["q1", "q1"], "doc_id": ["d4", "d9"], "label": [0, 1], "completion": [NO, YES],
                        "prompt": [prompts.pointwise_prompt(tokenizer, query, document) for document in (short, LONG_DOCUMENT)]})
    return answer_pairs(sft) if method == "dpo" else sft


@pytest.mark.parametrize("method", ["sft", "dpo", "reward"])
def test_a_too_long_document_is_cut_so_that_the_answer_and_eos_are_trained_and_nothing_is_dropped(method, tiny_lm_dir, tokenizer, tmp_path):
    YES, NO = prompts.pointwise_completions(tokenizer)
    data = long_document_data(method, tokenizer)
    assert len(tokenizer(data.prompt[1] + (data.chosen[1] if method == "reward" else YES))["input_ids"]) > 2 * MAX_LENGTH
    trainer, truncated = build_trainer(method, tiny_lm_dir, data, tmp_path)
    assert (truncated, len(trainer.train_dataset)) == (1, 2)
    eos = [tokenizer.eos_token_id]
    example = trainer.train_dataset[1]
    if method == "sft":
        sequence, trained = example["input_ids"], [t for t in example["labels"] if t != -100]
        assert trained == tokenizer(YES, add_special_tokens=False)["input_ids"] + eos
    elif method == "dpo":
        sequence = example["prompt_ids"] + example["chosen_ids"]
        assert example["chosen_ids"] == tokenizer(YES, add_special_tokens=False)["input_ids"] + eos
        assert example["rejected_ids"] == tokenizer(NO, add_special_tokens=False)["input_ids"] + eos
    else:
        sequence = example["chosen_ids"]
        assert tokenizer.decode(sequence).startswith(data.prompt[1] + "Alpine glaciers lose mass")
    assert sequence[-1] == tokenizer.eos_token_id
    assert MAX_LENGTH - 3 <= len(sequence) <= MAX_LENGTH  # cut at the document's last token that fits
    # the documents that fitted are untouched
    assert trainer.train_dataset[0] == build_trainer(method, tiny_lm_dir, data.iloc[:1], tmp_path / "short")[0].train_dataset[0]


def test_qlm_sft_cuts_a_long_document_and_trains_on_the_whole_query_and_eos(tiny_lm_dir, tokenizer, tmp_path):
    query = "glacier ice loss in the Alps since 1990"
    documents = ["Sea ice: Arctic sea ice.", LONG_DOCUMENT]
    data = pd.DataFrame({"query_id": ["q1", "q1"], "doc_id": ["d4", "d9"], "document": documents,
                         "prompt": [QLM_TEMPLATE.replace("{document}", d) for d in documents], "completion": [" " + query] * 2})
    assert len(tokenizer(data.prompt[1] + data.completion[1])["input_ids"]) > 2 * MAX_LENGTH
    trainer, truncated = build_trainer("qlm_sft", tiny_lm_dir, data, tmp_path)
    assert (truncated, len(trainer.train_dataset)) == (1, 2)
    example = trainer.train_dataset[1]
    sequence, trained = example["input_ids"], [t for t in example["labels"] if t != -100]
    assert trained == tokenizer(" " + query, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    text = tokenizer.decode(sequence)
    assert text.startswith("Record: Alpine glaciers lose mass") and text.endswith("\nA question it answers: " + query + tokenizer.eos_token)
    assert MAX_LENGTH - 3 <= len(sequence) <= MAX_LENGTH


def test_the_cut_count_is_recorded_in_the_training_config(tiny_lm_dir, tokenizer, tmp_path):
    from rerank_audit.training.trainers import train_reranker

    record = train_reranker("sft", tiny_lm_dir, long_document_data("sft", tokenizer), tmp_path, hyper(max_length=MAX_LENGTH, max_steps=1), seed=0)
    assert (record["truncated_documents"], record["train_samples"], record["examples"]) == (1, 2, 2)


def test_the_lm_head_projects_only_the_labelled_positions_and_the_loss_is_the_same(tiny_lm_dir, monkeypatch):
    """label_positions_only: TRL's fused head on the CPU projects 2 labelled positions per row, not all 11."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from rerank_audit.training.trainers import label_positions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32)
    add_fused_lm_head(model)
    ids = torch.randint(0, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, -2:] = ids[:, -2:]
    projected, apply = [], trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", lambda hidden, *args: (projected.append(len(hidden)), apply(hidden, *args))[1])

    def loss():
        return model(input_ids=ids, labels=labels, fused_lm_head=True).loss

    every = loss()
    with label_positions_only():
        labelled = loss()
    assert projected == [3 * 11, 3 * 2]
    torch.testing.assert_close(labelled, every)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # restored


def test_a_query_too_long_for_max_length_even_without_its_document_is_an_error(tiny_lm_dir, tokenizer):
    from rerank_audit.training.fit_documents import fit_documents

    data = long_document_data("sft", tokenizer)
    with pytest.raises(ValueError, match="training example 0 \\(query q1\\).*even without its document; raise max_length"):
        fit_documents("sft", data, tokenizer, 40)


@pytest.fixture(scope="module")
def pad_is_eos_lm_dir(tiny_lm_dir, tmp_path_factory):
    """The tiny model with a tokenizer that pads with its EOS, as the converted SmolLM2 does."""
    folder = tmp_path_factory.mktemp("pad-is-eos")
    shutil.copytree(tiny_lm_dir, folder, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"pad_token_id": tok.eos_token_id}))
    return folder


def test_the_reward_head_reads_the_eos_token_even_when_the_tokenizer_pads_with_eos(pad_is_eos_lm_dir, tmp_path):
    import torch

    tok = AutoTokenizer.from_pretrained(pad_is_eos_lm_dir)
    assert tok.pad_token_id == tok.eos_token_id == 2
    trainer, _ = build_trainer("reward", pad_is_eos_lm_dir, make_pairs(tok), tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model = trainer.model.eval()
    ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)  # the trainer put the model on the GPU, if any
    with torch.no_grad():
        rewards = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    ends = mask.sum(dim=1) - 1  # the last real token of each (right-padded) sequence
    rows = torch.arange(len(ends), device=model.device)
    assert ends.unique().numel() > 1  # the batch is padded: some sequences end before others
    assert (ids[rows, ends] == tok.eos_token_id).all()
    torch.testing.assert_close(rewards, model.score(hidden[rows, ends])[:, 0])


def test_a_reward_model_is_saved_with_a_pad_token_other_than_eos(pad_is_eos_lm_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rerank_audit.training.trainers import train_reranker

    tok = AutoTokenizer.from_pretrained(pad_is_eos_lm_dir)
    record = train_reranker("reward", pad_is_eos_lm_dir, make_pairs(tok), tmp_path, hyper(max_steps=1), seed=0)
    saved = AutoTokenizer.from_pretrained(tmp_path)
    config = AutoModelForSequenceClassification.from_pretrained(tmp_path).config
    assert (saved.pad_token, config.pad_token_id, record["pad_token"]) == ("<|endoftext|>", saved.pad_token_id, "<|endoftext|>")
    assert config.pad_token_id != saved.eos_token_id == tok.eos_token_id


# ------------------------------------------------------------------ resume

# Runs train_reranker in a child process, each step slowed down so that the parent can kill
# it between two checkpoints.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    import transformers
    from rerank_audit.io import read_table
    from rerank_audit.training.settings import TrainingSettings
    from rerank_audit.training.trainers import train_reranker

    step = transformers.Trainer.training_step
    def slow_step(self, *args, **kwargs):
        time.sleep(0.4)
        return step(self, *args, **kwargs)
    transformers.Trainer.training_step = slow_step

    base, data, out, settings = sys.argv[1:]
    train_reranker("sft", base, read_table(data), out, TrainingSettings.from_dict(json.loads(settings)), seed=0)
    """
)


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint_and_ends_at_max_steps(tiny_lm_dir, tokenizer, tmp_path, caplog):
    from rerank_audit.training.trainers import train_reranker

    data, out = make_sft(tokenizer), tmp_path / "model"
    write_table(data, tmp_path / "sft.parquet", schemas.SFT_EXAMPLES)
    settings = hyper(max_steps=6, save_steps=2, batch_size=1)
    (tmp_path / "child.py").write_text(CHILD)
    child_log = tmp_path / "child.log"
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(tiny_lm_dir), str(tmp_path / "sft.parquet"), str(out), json.dumps(settings.as_dict())],
        stdout=subprocess.DEVNULL, stderr=child_log.open("w"), env=os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    # trainer_state.json is the last file of a checkpoint: it is complete once that exists
    while not list(out.glob("checkpoints/checkpoint-*/trainer_state.json")):
        assert child.poll() is None, child_log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (out / "training_config.json").exists()
    saved = sorted(p.name for p in out.glob("checkpoints/checkpoint-*"))
    assert saved[-1] in ("checkpoint-2", "checkpoint-4")

    with caplog.at_level("INFO", logger="rerank_audit.training.trainers"):
        record = train_reranker("sft", tiny_lm_dir, data, out, settings, seed=0)
    assert record["resumed_from"] in ("checkpoint-2", "checkpoint-4")
    assert f"resuming from {out / 'checkpoints' / record['resumed_from']}" in caplog.text
    assert record["steps"] == 6
    state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------ trained scorers

# Documents about a "glacier" are relevant to every query, those about a "desert" are not;
# the other words are shared, so only that word (in the title and the text) tells them apart.
FILLERS = ["data from stations", "a field survey", "monthly satellite maps", "records since 1990",
           "model output", "a regional report", "daily observations", "an archive of photos"]
HELD_OUT = ["new measurements", "a student thesis"]
TOY_QUERIES = ["climate change evidence", "environmental monitoring"]


def toy_document(word, filler):
    return word, f"{filler} on the {word}"  # (title, text)


def toy_collection():
    docs = [(f"{word[0]}{i}", *toy_document(word, filler)) for word in ("glacier", "desert") for i, filler in enumerate(FILLERS)]
    corpus = pd.DataFrame(docs, columns=["doc_id", "title", "text"])
    queries = pd.DataFrame({"query_id": ["t0", "t1"], "text": TOY_QUERIES})
    glaciers = [doc_id for doc_id in corpus.doc_id if doc_id.startswith("g")]
    deserts = [doc_id for doc_id in corpus.doc_id if doc_id.startswith("d")]
    qrels = pd.DataFrame([(q, d, int(d in glaciers)) for q in queries.query_id for d in glaciers + deserts], columns=["query_id", "doc_id", "relevance"])
    # BM25 ranks the deserts (judged non-relevant) on top: the hardest negatives
    run = pd.DataFrame(
        [(q, d, float(-r), r + 1) for q in queries.query_id for r, d in enumerate(deserts + glaciers)],
        columns=["query_id", "doc_id", "score", "rank"],
    )
    return corpus, queries, qrels, run


# Learning rates and steps at which the tiny random model learns the toy task (seed 0).
TOY_TRAINING = {
    "sft": dict(learning_rate=3e-3, max_steps=120, batch_size=8),
    "dpo": dict(learning_rate=3e-3, max_steps=40, batch_size=8, beta=0.5),
    "dpo_pairs": dict(learning_rate=3e-3, max_steps=30, batch_size=8, beta=0.5),
    "reward": dict(learning_rate=3e-3, max_steps=30, batch_size=8),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TOY_TRAINING))
def test_each_trained_scorer_ranks_glacier_documents_above_desert_ones(method, tiny_lm_dir, tokenizer, tmp_path, device):
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.training.trainers import train_reranker

    corpus, queries, qrels, run = toy_collection()
    ids = list(queries.query_id)
    if method in ("sft", "dpo"):
        data = sft_examples(corpus, queries, qrels, run, ids, tokenizer, negatives_per_positive=1,
                            max_positives_per_query=len(FILLERS), relevance_threshold=1, seed=0)
        data = answer_pairs(data) if method == "dpo" else data
    else:
        data = preference_pairs(corpus, queries, qrels, run, ids, tokenizer, pairs_per_query=len(FILLERS), relevance_threshold=1, seed=0)
    settings = hyper(**TOY_TRAINING[method], save_steps=1000, logging_steps=10)
    train_reranker(method, tiny_lm_dir, data, tmp_path, settings, seed=0)

    scorer = load_scorer(method, tmp_path, base_model=tiny_lm_dir, beta=settings.beta, settings=ScoringSettings(device=device))
    held_out = [prompts.document_text(*toy_document(word, filler)) for word in ("glacier", "desert") for filler in HELD_OUT]
    for query in TOY_QUERIES:
        scores = scorer.score_pairs([query] * len(held_out), held_out)
        glacier, desert = scores[: len(HELD_OUT)], scores[len(HELD_OUT) :]
        assert glacier.min() > desert.max(), (query, scores)


@pytest.mark.slow
def test_qlm_sft_then_qlm_scoring_ranks_each_topic_document_above_the_other_topic(tiny_lm_dir, tmp_path, device):
    """Each toy query is relevant to one topic's documents; after qlm_sft (LoRA, as configured), the
    query likelihood puts the held-out documents of the query's topic above those of the other topic."""
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
    from rerank_audit.training.trainers import train_reranker

    corpus, _, _, run = toy_collection()
    topic_queries = {"glacier": "melting ice in the mountains", "desert": "sand dunes and dry heat"}
    queries = pd.DataFrame({"query_id": ["t0", "t1"], "text": list(topic_queries.values())})
    qrels = pd.DataFrame([(q, d, int(d[0] == word[0])) for q, word in zip(queries.query_id, topic_queries) for d in corpus.doc_id],
                         columns=["query_id", "doc_id", "relevance"])
    data = query_examples(corpus, queries, qrels, run, ["t0", "t1"], template=DEFAULT_QLM_TEMPLATE,
                          max_positives_per_query=len(FILLERS), relevance_threshold=1, seed=0)
    settings = hyper(learning_rate=3e-3, max_steps=60, batch_size=8, save_steps=1000, logging_steps=20)
    train_reranker("qlm_sft", tiny_lm_dir, data, tmp_path, settings, seed=0)

    scorer = load_scorer("qlm_sft", tmp_path, base_model=tiny_lm_dir, template=DEFAULT_QLM_TEMPLATE, settings=ScoringSettings(device=device, dtype="float32"))
    held_out = {word: [prompts.document_text(*toy_document(word, filler)) for filler in HELD_OUT] for word in topic_queries}
    for word, query in topic_queries.items():
        other = next(w for w in topic_queries if w != word)
        own, unrelated = (scorer.score_pairs([query] * len(HELD_OUT), held_out[w]) for w in (word, other))
        assert own.min() > unrelated.max(), (query, own, unrelated)


def test_the_run_fingerprint_is_the_configured_settings_not_what_the_memory_plan_resolved(tiny_lm_dir, tokenizer, tmp_path, monkeypatch):
    """A job that finds less memory turns checkpointing on; its checkpoints' run.json must not change (else a resumed job
    discards them). The resolved values are recorded in training_config.json under ``resolved``."""
    from rerank_audit.training import trainers
    from rerank_audit.training.checkpoints import CHECKPOINTS, RUN_FINGERPRINT

    settings = hyper(max_length=MAX_LENGTH, max_steps=1)
    plain = trainers.train_reranker("sft", tiny_lm_dir, long_document_data("sft", tokenizer), tmp_path / "a", settings, seed=0)
    monkeypatch.setattr(trainers, "fit_memory", lambda *args: {"activation_checkpointing": True, "quantization": "none"})
    tight = trainers.train_reranker("sft", tiny_lm_dir, long_document_data("sft", tokenizer), tmp_path / "b", settings, seed=0)
    run = lambda name: json.loads((tmp_path / name / CHECKPOINTS / RUN_FINGERPRINT).read_text())  # noqa: E731
    assert run("a") == run("b")
    assert (plain["resolved"], tight["resolved"]) == ({"activation_checkpointing": False, "quantization": "none"},
                                                      {"activation_checkpointing": True, "quantization": "none"})
    assert plain["hyper"] == tight["hyper"]

"""Training: examples from qrels + BM25 hard negatives, and the four TRL trainers on a tiny model.

The hand-made collection (relevance threshold 2):

    q1  qrels d5:3  d1:2  d3:1 (partly relevant: neither positive nor negative)  d2:0
        BM25  d2 d3 d4 d1 d6 d5
    q2  qrels d4:2           BM25  d4 d1 d2   (d1 is unjudged for q2: a negative)
    q3  qrels d1:0           BM25  d1 d2      (no relevant document: no example)

so the positives are q1: d5, d1 (highest grade first) and q2: d4; the hard negatives are
q1: d2, d4, d6 and q2: d1, d2 (BM25 order, relevant and partly relevant skipped).
"""

import json
import os
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
from rerank_audit.models import prompts
from rerank_audit.training.examples import answer_pairs, preference_pairs, sft_examples

REPO = Path(__file__).resolve().parents[1]
# TRL 1.16 itself calls a transformers 5.24 deprecated alias on every DPO step; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

CORPUS = pd.DataFrame(
    {
        "doc_id": ["d1", "d2", "d3", "d4", "d5", "d6"],
        "title": ["Glacier mass", "", "Snow cover", "Sea ice", "Ice cores", "Permafrost"],
        "text": ["Alpine glaciers lose mass.", "Dust storms.", "Snow in the Alps.", "Arctic sea ice.", "Antarctic cores.", "Thawing soil."],
    }
)
QUERIES = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "text": ["glacier ice loss", "sea ice extent", "dust"]})
QRELS = pd.DataFrame(
    {
        "query_id": ["q1", "q1", "q1", "q1", "q2", "q3"],
        "doc_id": ["d5", "d1", "d3", "d2", "d4", "d1"],
        "relevance": [3, 2, 1, 0, 2, 0],
    }
)
RUN = pd.DataFrame(
    {
        "query_id": ["q1"] * 6 + ["q2"] * 3 + ["q3"] * 2,
        "doc_id": ["d2", "d3", "d4", "d1", "d6", "d5", "d4", "d1", "d2", "d1", "d2"],
        "score": [9.0, 8, 7, 6, 5, 4, 9, 8, 7, 9, 8],
        "rank": [1, 2, 3, 4, 5, 6, 1, 2, 3, 1, 2],
    }
)
TRAIN = ["q2", "q1", "q3"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model gains nothing from more threads, and on a shared CPU they oversubscribe it (10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def make_sft(tokenizer, **options):
    settings = dict(negatives_per_positive=1, max_positives_per_query=2, relevance_threshold=2, seed=0) | options
    return sft_examples(CORPUS, QUERIES, QRELS, RUN, TRAIN, tokenizer, **settings)


def make_pairs(tokenizer, **options):
    settings = dict(pairs_per_query=3, relevance_threshold=2, seed=0) | options
    return preference_pairs(CORPUS, QUERIES, QRELS, RUN, TRAIN, tokenizer, **settings)


def rows(frame, columns):
    return [tuple(row) for row in frame[columns].itertuples(index=False)]


# ------------------------------------------------------------------ examples


def test_sft_examples_are_relevant_docs_then_top_ranked_non_relevant_candidates(tokenizer):
    examples = make_sft(tokenizer)
    assert rows(examples, ["query_id", "doc_id", "label"]) == [
        ("q2", "d4", 1), ("q2", "d1", 0),
        ("q1", "d5", 1), ("q1", "d1", 1), ("q1", "d2", 0), ("q1", "d4", 0),
    ]
    assert examples.completion.tolist() == ["yes", "no", "yes", "yes", "no", "no"]
    assert examples.prompt[0] == prompts.pointwise_prompt(tokenizer, "sea ice extent", "Sea ice: Arctic sea ice.")
    assert examples.prompt[4] == prompts.pointwise_prompt(tokenizer, "glacier ice loss", "Dust storms.")


def test_sft_examples_cap_positives_and_scale_negatives_with_them(tokenizer):
    examples = make_sft(tokenizer, max_positives_per_query=1, negatives_per_positive=2)
    assert rows(examples, ["query_id", "doc_id", "label"]) == [
        ("q2", "d4", 1), ("q2", "d1", 0), ("q2", "d2", 0),
        ("q1", "d5", 1), ("q1", "d2", 0), ("q1", "d4", 0),
    ]


def test_sft_examples_are_deterministic_and_fit_their_schema(tokenizer, tmp_path):
    examples = make_sft(tokenizer, relevance_threshold=1, seed=7)
    pd.testing.assert_frame_equal(examples, make_sft(tokenizer, relevance_threshold=1, seed=7))
    write_table(examples, tmp_path / "sft.parquet", schemas.SFT_EXAMPLES)
    pd.testing.assert_frame_equal(read_table(tmp_path / "sft.parquet", schemas.SFT_EXAMPLES), examples, check_dtype=False)


def test_preference_pairs_put_each_hard_negative_under_the_positives_in_turn(tokenizer, tmp_path):
    pairs = make_pairs(tokenizer)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id"]) == [
        ("q2", "d4", "d1"), ("q2", "d4", "d2"),
        ("q1", "d5", "d2"), ("q1", "d1", "d4"), ("q1", "d5", "d6"),
    ]
    assert pairs.prompt[0] == prompts.document_prompt(tokenizer, "sea ice extent")
    assert (pairs.chosen[0], pairs.rejected[0]) == ("Sea ice: Arctic sea ice.", "Glacier mass: Alpine glaciers lose mass.")
    write_table(pairs, tmp_path / "pairs.parquet", schemas.PREFERENCE_PAIRS)


def test_answer_pairs_prefer_the_correct_answer_on_the_same_prompt(tokenizer, tmp_path):
    examples = make_sft(tokenizer)
    pairs = answer_pairs(examples)
    assert rows(pairs, ["query_id", "chosen_doc_id", "rejected_doc_id", "chosen", "rejected"]) == [
        ("q2", "d4", "d4", "yes", "no"), ("q2", "d1", "d1", "no", "yes"),
        ("q1", "d5", "d5", "yes", "no"), ("q1", "d1", "d1", "yes", "no"),
        ("q1", "d2", "d2", "no", "yes"), ("q1", "d4", "d4", "no", "yes"),
    ]
    assert pairs.prompt.tolist() == examples.prompt.tolist()
    write_table(pairs, tmp_path / "answers.parquet", schemas.PREFERENCE_PAIRS)


def test_unknown_training_query_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="q9"):
        sft_examples(CORPUS, QUERIES, QRELS, RUN, ["q9"], tokenizer, negatives_per_positive=1,
                     max_positives_per_query=1, relevance_threshold=1, seed=0)


# ------------------------------------------------------------------ trainers

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def hyper(**overrides):
    settings = dict(learning_rate=1e-3, epochs=1, max_steps=2, batch_size=2, gradient_accumulation=1, beta=0.1,
                    lora={"enabled": False}, max_length=256, save_steps=2, logging_steps=1)
    return settings | overrides


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

    with pytest.raises(ValueError, match="missing \\['beta'\\], unknown \\['lr'\\]"):
        settings = hyper(lr=1.0)
        del settings["beta"]
        train_reranker("dpo_pairs", tiny_lm_dir, make_pairs(tokenizer), tmp_path, settings, seed=0)
    with pytest.raises(ValueError, match="lacks the columns \\['completion'\\]"):
        train_reranker("sft", tiny_lm_dir, make_pairs(tokenizer), tmp_path, hyper(), seed=0)


# ------------------------------------------------------------------ resume

# Runs train_reranker in a child process, each step slowed down so that the parent can kill
# it between two checkpoints.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    import transformers
    from rerank_audit.io import read_table
    from rerank_audit.training.trainers import train_reranker

    step = transformers.Trainer.training_step
    def slow_step(self, *args, **kwargs):
        time.sleep(0.4)
        return step(self, *args, **kwargs)
    transformers.Trainer.training_step = slow_step

    base, data, out, settings = sys.argv[1:]
    train_reranker("sft", base, read_table(data), out, json.loads(settings), seed=0)
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
        [sys.executable, str(tmp_path / "child.py"), str(tiny_lm_dir), str(tmp_path / "sft.parquet"), str(out), json.dumps(settings)],
        stdout=subprocess.DEVNULL, stderr=child_log.open("w"), env=os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
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
    qrels = pd.DataFrame([(q, d, 1) for q in queries.query_id for d in glaciers], columns=["query_id", "doc_id", "relevance"])
    # BM25 ranks the deserts on top: the hardest negatives
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
def test_each_trained_scorer_ranks_glacier_documents_above_desert_ones(method, tiny_lm_dir, tokenizer, tmp_path):
    from rerank_audit.models.scorers import load_scorer
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

    scorer = load_scorer(method, tmp_path, base_model=tiny_lm_dir, beta=settings["beta"], device="cpu")
    held_out = [prompts.document_text(*toy_document(word, filler)) for word in ("glacier", "desert") for filler in HELD_OUT]
    for query in TOY_QUERIES:
        scores = scorer.score_pairs([query] * len(held_out), held_out)
        glacier, desert = scores[: len(HELD_OUT)], scores[len(HELD_OUT) :]
        assert glacier.min() > desert.max(), (query, scores)

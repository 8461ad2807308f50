"""Specification of qlm_lce: its training groups, its loss, its trainer (training/lce.py, examples.lce_groups).

The loss is checked against an independent computation (the model's own full-logits
forward, cross-entropy written out), the tokens against the qlm scorer, and training
against its purpose: after it, each toy query ranks its own document first in its judged
pool, which the untrained model does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from peft import LoraConfig

from rerank_audit.models.loading import load_causal_lm, load_tokenizer
from rerank_audit.models.scoring.likelihood import QueryLikelihoodScorer
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
from rerank_audit.training.examples import (
    GROUP_COLUMNS,
    JUDGED_NON_RELEVANT,
    RELEVANT,
    UNJUDGED,
    NoNegativesError,
    lce_groups,
)
from rerank_audit.training.lce import (
    LCEConfig,
    LCETrainer,
    group_cross_entropy,
    group_dataset,
    query_log_likelihoods,
)
from tiny_model import spread_weights

MAX_LENGTH = 64  # cuts LONG_DOCUMENT, not the toy documents
LONG_DOCUMENT = "Snow water equivalent in the Alps from satellite passive microwave. " * 6
# Four toy queries, each with its relevant document (index 0) and three judged non-relevant
# ones that share a word with it (hard negatives).
TOY = {
    "q1": ("sea level rise at Venice", [
        "Tide gauges at Venice and Trieste record sea level rise.", "Venice hosts a film festival every year.",
        "Sea salt aerosols over the open ocean.", "Rising rents push residents out of the city."]),
    "q2": ("co2 flux of a boreal forest", [
        "Eddy covariance carbon dioxide flux over a boreal pine forest.", "Forest fires in California last summer.",
        "A flux capacitor is a film prop.", "Boreal owls nest in old trees."]),
    "q3": ("snow in the Alps", [
        "Snow water equivalent in the Alps from satellite microwave.", "The Alps are a popular hiking destination.",
        "Snow tyres are required in winter.", "Glacier tourism in Norway."]),
    "q4": ("polar bears face extinction", [
        "Global warming is driving polar bears toward extinction.", "Bears hibernate through the winter.",
        "The polar vortex brings cold air south.", "Extinction of the dodo in Mauritius."]),
}  # fmt: skip


def qlm_scorer(model, tokenizer, max_length: int | None = None) -> QueryLikelihoodScorer:
    """The qlm scorer as re-ranking builds it (the one line to change when its constructor changes)."""
    return QueryLikelihoodScorer(model, tokenizer, template=DEFAULT_QLM_TEMPLATE, settings=ScoringSettings(max_length=max_length, progress=False))


def lce_args(tmp_path, **changes) -> LCEConfig:
    """LCEConfig with the keywords build.build_trainer passes to every trainer kind (``args``)."""
    common = dict(
        output_dir=str(tmp_path / "checkpoints"), learning_rate=1e-2, num_train_epochs=1.0, max_steps=-1,
        per_device_train_batch_size=2, gradient_accumulation_steps=1, max_length=None, save_strategy="steps",
        save_steps=1000, save_total_limit=2, logging_steps=1000, report_to="none", disable_tqdm=True, seed=0, data_seed=0,
        bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False, dataloader_pin_memory=False,
        model_init_kwargs={"dtype": "float32"},
    )  # fmt: skip
    return LCEConfig(**(common | changes))


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return load_tokenizer(tiny_lm_dir)


@pytest.fixture(scope="module")
def spread_lm(tiny_lm_dir):
    """The tiny LM with spread-out weights: the default init gives near-uniform log-probabilities."""
    return spread_weights(load_causal_lm(tiny_lm_dir, "cpu", "float32"))


@pytest.fixture(scope="module")
def toy_tables():
    """(corpus, queries, qrels, run) of TOY: q<i>d0 relevant (grade 2), q<i>d1..3 judged non-relevant."""
    corpus = pd.DataFrame(
        [(f"{q}d{i}", "", text) for q, (_, documents) in TOY.items() for i, text in enumerate(documents)], columns=["doc_id", "title", "text"]
    )
    queries = pd.DataFrame([(q, text) for q, (text, _) in TOY.items()], columns=["query_id", "text"])
    qrels = pd.DataFrame([(q, f"{q}d{i}", 2 if i == 0 else 0) for q in TOY for i in range(4)], columns=["query_id", "doc_id", "relevance"])
    run = qrels.assign(rank=qrels.groupby("query_id").cumcount() + 1)[["query_id", "doc_id", "rank"]]
    return corpus, queries, qrels, run


def _own_document_first(model, tokenizer) -> list[bool]:
    """Per toy query: whether its relevant document scores highest in its judged pool (the qlm scorer)."""
    scorer = qlm_scorer(model, tokenizer)
    pairs = [(query, document) for query, documents in TOY.values() for document in documents]
    scores = scorer.score_pairs([q for q, _ in pairs], [d for _, d in pairs]).reshape(len(TOY), 4)
    return list(scores.argmax(axis=1) == 0)


# --------------------------------------------------------------------------------------
# training groups


def _group_tables():
    """q1: relevant d1; judged non-relevant n1 (not in its run), n2 (rank 3) and d2 (graded 1 for q2);
    unjudged BM25 candidates u1 (rank 2), u2 (rank 4), m1 (rank 6; graded 1 for q2, below the threshold).
    q2: relevant d2."""
    corpus = pd.DataFrame([(d, "", f"text of {d}") for d in ("d1", "d2", "n1", "n2", "u1", "u2", "m1")], columns=["doc_id", "title", "text"])
    queries = pd.DataFrame([("q1", "query one"), ("q2", "query two")], columns=["query_id", "text"])
    qrels = pd.DataFrame(
        [("q1", "d1", 2), ("q1", "n1", 0), ("q1", "n2", 0), ("q1", "d2", 0), ("q2", "d2", 2), ("q2", "m1", 1)],
        columns=["query_id", "doc_id", "relevance"],
    )
    run = pd.DataFrame(
        [("q1", d, r) for r, d in enumerate(["d2", "u1", "n2", "u2", "d1", "m1"], start=1)] + [("q2", "d2", 1)],
        columns=["query_id", "doc_id", "rank"],
    )
    return corpus, queries, qrels, run


def _toy_groups(query_ids=("q1", "q2"), negatives_per_group=3, unjudged_negatives=True):
    corpus, queries, qrels, run = _group_tables()
    return lce_groups(
        corpus, queries, qrels, run, list(query_ids), negatives_per_group=negatives_per_group, max_positives_per_query=1,
        relevance_threshold=2, seed=0, unjudged_negatives=unjudged_negatives,
    )  # fmt: skip


def test_lce_groups_put_judged_non_relevant_negatives_first_then_unjudged_candidates():
    groups = _toy_groups()
    assert list(groups.columns) == GROUP_COLUMNS
    # q2 has no negative (m1 is graded 1 for it, so neither relevant nor negative): no group.
    assert groups.doc_id.tolist() == ["d1", "n2", "n1", "u1"]
    assert groups.position.tolist() == [0, 1, 2, 3] and set(groups.group) == {0}
    assert groups.source.tolist() == [RELEVANT, JUDGED_NON_RELEVANT, JUDGED_NON_RELEVANT, UNJUDGED]
    assert groups.document.tolist() == ["text of d1", "text of n2", "text of n1", "text of u1"]
    assert set(groups["query"]) == {"query one"}


def test_lce_group_negatives_are_never_relevant_to_any_query():
    groups, qrels = _toy_groups(negatives_per_group=10), _group_tables()[2]
    graded_anywhere = set(qrels.doc_id[qrels.relevance > 0])
    negatives = groups.doc_id[groups.position > 0]
    assert negatives.tolist() == ["n2", "n1", "u1", "u2"]  # d2 and m1 (graded for q2) left out
    assert not set(negatives) & graded_anywhere


def test_lce_groups_without_the_switch_take_judged_negatives_only():
    groups = _toy_groups(negatives_per_group=10, unjudged_negatives=False)
    assert groups.doc_id.tolist() == ["d1", "n2", "n1"]


def test_lce_groups_fail_when_no_query_has_a_negative():
    with pytest.raises(NoNegativesError):
        _toy_groups(query_ids=["q2"])


def test_group_dataset_holds_one_row_per_group_relevant_document_first(toy_tables):
    groups = lce_groups(*toy_tables, list(TOY), negatives_per_group=2, max_positives_per_query=1, relevance_threshold=1, seed=0, unjudged_negatives=False)
    dataset = group_dataset(groups.sample(frac=1.0, random_state=0))  # row order must not matter
    assert dataset["query"] == [text for text, _ in TOY.values()]
    assert dataset["documents"] == [documents[:3] for _, documents in TOY.values()]
    with pytest.raises(ValueError, match="no negative"):
        group_dataset(groups[groups.position == 0])


# --------------------------------------------------------------------------------------
# tokens and loss


def _naive_query_log_likelihood(model, tokenizer, query: str, document: str) -> float:
    """Mean log P(query token) from the model's own full-logits forward over the whole text."""
    ids = tokenizer(DEFAULT_QLM_TEMPLATE.replace("{document}", document) + " " + query)["input_ids"]
    n_query = len(tokenizer(" " + query, add_special_tokens=False)["input_ids"])
    log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    positions = torch.arange(len(ids) - n_query - 1, len(ids) - 1)
    return log_probs[positions, torch.tensor(ids[-n_query:])].mean()


def test_collator_reads_the_tokens_the_qlm_scorer_scores(tmp_path, tiny_lm_dir, tokenizer, spread_lm):
    trainer = LCETrainer(spread_lm, lce_args(tmp_path, max_length=MAX_LENGTH), train_dataset=None, processing_class=tokenizer)
    features = [{"query": "snow in the Alps", "documents": [LONG_DOCUMENT, "Glacier tourism in Norway.", ""]},
                {"query": "polar bears face extinction", "documents": ["Bears hibernate.", LONG_DOCUMENT]}]  # fmt: skip
    batch = trainer.data_collator(features)
    queries = [f["query"] for f in features for _ in f["documents"]]
    documents = [d for f in features for d in f["documents"]]
    scorer = qlm_scorer(spread_lm, tokenizer, max_length=MAX_LENGTH)

    expected_ids = scorer.prompt_ids(queries, documents)
    assert max(len(ids) for ids in expected_ids) == MAX_LENGTH  # the long document was cut
    rows = batch["query_rows"].tolist()
    for row, ids in enumerate(expected_ids):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["attention_mask"][row].sum().item() == len(ids)
        # the positions whose hidden states predict the query's tokens: the last n_query tokens
        n_query = len(tokenizer(" " + queries[row], add_special_tokens=False)["input_ids"])
        cols = [c for r, c in zip(rows, batch["query_cols"].tolist()) if r == row]
        assert cols == list(range(len(ids) - n_query - 1, len(ids) - 1))
    assert batch["query_targets"].tolist() == [expected_ids[r][c + 1] for r, c in zip(rows, batch["query_cols"].tolist())]
    assert batch["group_mask"].tolist() == [[True, True, True], [True, True, False]]
    with torch.no_grad():
        ours = query_log_likelihoods(spread_lm, batch).double().numpy()
    np.testing.assert_allclose(ours, scorer.score_pairs(queries, documents), atol=1e-5, rtol=0)


def test_loss_equals_cross_entropy_over_full_logits_query_log_likelihoods(tmp_path, tokenizer, spread_lm):
    temperature = 0.5
    trainer = LCETrainer(spread_lm, lce_args(tmp_path, temperature=temperature), train_dataset=None, processing_class=tokenizer)
    features = [{"query": text, "documents": documents[:size]} for (text, documents), size in zip(list(TOY.values())[:2], (3, 2))]
    loss = trainer.compute_loss(spread_lm, trainer.data_collator(features))

    hand = []
    for feature in features:
        scores = torch.stack([_naive_query_log_likelihood(spread_lm, tokenizer, feature["query"], d) for d in feature["documents"]])
        hand.append(-(scores[0] / temperature - torch.logsumexp(scores / temperature, dim=0)))
    expected = torch.stack(hand).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert loss.item() > 0.01  # not a trivially zero loss
    parameters = [p for p in spread_lm.parameters() if p.requires_grad]
    ours, theirs = torch.autograd.grad(loss, parameters), torch.autograd.grad(expected, parameters)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_group_cross_entropy_ignores_absent_members():
    scores = torch.tensor([0.0, -1.0, -2.0, -3.0, -1.0])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = (-(0.0 - torch.logsumexp(torch.tensor([0.0, -1.0, -2.0]), 0)) - (-3.0 - torch.logsumexp(torch.tensor([-3.0, -1.0]), 0))) / 2
    assert group_cross_entropy(scores, mask, 1.0).item() == pytest.approx(expected.item(), abs=1e-6)


def test_bf16_autocast_runs_the_backbone_in_bf16(tmp_path, tiny_lm_dir, tokenizer, toy_tables):
    groups = lce_groups(*toy_tables, list(TOY), negatives_per_group=3, max_positives_per_query=1, relevance_threshold=1, seed=0, unjudged_negatives=False)
    trainer = LCETrainer(str(tiny_lm_dir), lce_args(tmp_path, bf16=True, max_steps=1), group_dataset(groups), tokenizer)
    seen = []
    trainer.model.model.layers[0].mlp.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    trainer.train()
    assert seen == [torch.bfloat16]
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])


# --------------------------------------------------------------------------------------
# training


@pytest.mark.slow
def test_lce_training_ranks_each_querys_own_document_first(tmp_path, tiny_lm_dir, tokenizer, toy_tables):
    groups = lce_groups(*toy_tables, list(TOY), negatives_per_group=3, max_positives_per_query=1, relevance_threshold=1, seed=0, unjudged_negatives=False)
    trainer = LCETrainer(str(tiny_lm_dir), lce_args(tmp_path, max_steps=20, per_device_train_batch_size=4), group_dataset(groups), tokenizer)
    assert not all(_own_document_first(trainer.model, tokenizer))
    trainer.train()
    assert _own_document_first(trainer.model, tokenizer) == [True] * len(TOY)


@pytest.mark.slow
def test_lora_training_resumed_from_a_checkpoint_ends_with_the_same_adapter(tmp_path, tiny_lm_dir, tokenizer, toy_tables):
    groups = group_dataset(lce_groups(*toy_tables, list(TOY), negatives_per_group=3, max_positives_per_query=1, relevance_threshold=1, seed=0, unjudged_negatives=False))
    lora = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")

    def trainer(folder):
        return LCETrainer(str(tiny_lm_dir), lce_args(folder, max_steps=4, save_steps=2), groups, tokenizer, peft_config=LoraConfig(**lora))

    whole = trainer(tmp_path / "whole")
    whole.train()
    checkpoints = tmp_path / "whole" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert (checkpoints / "checkpoint-2" / "adapter_model.safetensors").is_file()

    resumed = trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(checkpoints / "checkpoint-2"))
    assert resumed.state.global_step == 4
    final = {name: p for name, p in whole.model.named_parameters() if "lora_" in name}
    assert any(p.abs().sum() > 0 for name, p in final.items() if "lora_B" in name)  # trained (B starts at 0)
    for name, parameter in resumed.model.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(parameter, final[name], atol=1e-6, rtol=0)

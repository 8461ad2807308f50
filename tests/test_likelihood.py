"""Specification of the query-likelihood scorer (models/scoring/likelihood.py, method ``qlm``).

The naive reference runs one whole text at a time through the model's own forward and
takes the mean log-probability of the query's tokens, found as the tokens of " " + query
at the end; the batched scorer must agree with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rerank_audit.models.scoring import QueryLikelihoodScorer
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
from rerank_audit.models.loading import load_causal_lm, load_tokenizer
from rerank_audit.models.settings import ScoringSettings
from tiny_model import spread_weights

TOLERANCE = 1e-4
MAX_LENGTH = 48
LONG_DOCUMENT = "Snow water equivalent in the Alps from satellite passive microwave. " * 12
QUERIES = [
    "sea level rise in the Adriatic",
    "sea level rise in the Adriatic",
    "sea level rise in the Adriatic",
    "co2 flux boreal forest",
    "co2 flux boreal forest",
    "snow",  # one candidate
    "global warming polar bears extinction risk",
    "global warming polar bears extinction risk",
    "Eddy covariance",  # the same document as a previous pair, for another query
]
DOCUMENTS = [
    "Tide gauges: Monthly mean sea level at Venice and Trieste tide gauges, 1990 to 2024.",
    "Seismic waveforms from a broadband network in central Italy.",
    "",
    "Eddy covariance carbon dioxide flux over a boreal pine forest in Finland.",
    LONG_DOCUMENT,
    "Snow water equivalent in the Alps.",
    "Global warming is driving polar bears toward extinction.",
    LONG_DOCUMENT,
    "Eddy covariance carbon dioxide flux over a boreal pine forest in Finland.",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return load_tokenizer(tiny_lm_dir)


@pytest.fixture(scope="module")
def lm(tiny_lm_dir, device):
    """The tiny LM with spread-out weights: the default init gives near-uniform log-probabilities."""
    return spread_weights(load_causal_lm(tiny_lm_dir, device, "float32"))


def _naive_text(tokenizer, query: str, document: str, max_length: int | None) -> str:
    """The template with the longest document prefix (cut at a token of the document alone) that fits."""
    def text(d):
        return DEFAULT_QLM_TEMPLATE.replace("{document}", d) + " " + query

    ends = [end for _, end in tokenizer(document, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    for end in [len(document)] + ends[::-1]:
        if max_length is None or len(tokenizer(text(document[:end]))["input_ids"]) <= max_length:
            return text(document[:end])
    return text("")


def _naive_mean_log_prob(model, tokenizer, text: str, query: str) -> float:
    ids = tokenizer(text)["input_ids"]
    n_query = len(tokenizer(" " + query, add_special_tokens=False)["input_ids"])
    # special tokens around a text: a BOS (if any) in front, the rest appended
    n_special = len(tokenizer("x")["input_ids"]) - len(tokenizer("x", add_special_tokens=False)["input_ids"])
    end = len(ids) - (n_special - (ids[0] == tokenizer.bos_token_id))
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids], device=model.device)).logits[0].double(), dim=-1)
    return float(np.mean([log_probs[p - 1, ids[p]].item() for p in range(end - n_query, end)]))


def test_batched_scores_equal_one_text_at_a_time(lm, tokenizer):
    scorer = QueryLikelihoodScorer(lm, tokenizer, settings=ScoringSettings(batch_size=3, max_length=MAX_LENGTH))
    texts = [_naive_text(tokenizer, q, d, MAX_LENGTH) for q, d in zip(QUERIES, DOCUMENTS)]
    assert len(tokenizer(texts[4])["input_ids"]) <= MAX_LENGTH < len(tokenizer(LONG_DOCUMENT)["input_ids"])  # cut
    expected = [_naive_mean_log_prob(lm, tokenizer, t, q) for t, q in zip(texts, QUERIES)]
    assert np.std(expected) > 0.1  # the comparison below is meaningful
    scores = scorer.score_pairs(QUERIES, DOCUMENTS)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, atol=TOLERANCE, rtol=0)
    assert [len(ids) for ids in scorer.prompt_ids(QUERIES, DOCUMENTS)] == [len(tokenizer(t)["input_ids"]) for t in texts]


def test_prefix_reuse_changes_no_score(lm, tokenizer):
    reuse = QueryLikelihoodScorer(lm, tokenizer, settings=ScoringSettings(batch_size=2, max_length=MAX_LENGTH, prefix_reuse=True))
    plain = QueryLikelihoodScorer(lm, tokenizer, settings=ScoringSettings(batch_size=2, max_length=MAX_LENGTH, prefix_reuse=False))
    # one document for many queries: its prompt is the shared prefix
    queries = ["snow", "snow water", "Alps", "satellite microwave", "sea level"]
    documents = ["Snow water equivalent in the Alps from satellite passive microwave."] * 5
    np.testing.assert_allclose(reuse.score_pairs(queries, documents), plain.score_pairs(queries, documents), atol=TOLERANCE, rtol=0)


def test_empty_query_scores_zero_and_the_others_are_unchanged(lm, tokenizer):
    scorer = QueryLikelihoodScorer(lm, tokenizer)
    document = "Sea level at Venice."
    alone = scorer.score_pairs(["sea level"], [document])
    scores = scorer.score_pairs(["", "sea level"], [document, document])
    assert scores[0] == 0.0
    np.testing.assert_allclose(scores[1], alone[0], atol=TOLERANCE, rtol=0)
    assert scorer.score_pairs([], []).shape == (0,)


def test_bos_and_eos_added_by_the_tokenizer_are_not_query_tokens(lm, tiny_lm_dir):
    from tokenizers.processors import TemplateProcessing

    tokenizer = load_tokenizer(tiny_lm_dir)
    bos, eos = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A <|im_end|>", special_tokens=[("<|im_start|>", bos), ("<|im_end|>", eos)]
    )
    tokenizer.bos_token = "<|im_start|>"
    query, document = "co2 flux boreal forest", "Eddy covariance carbon dioxide flux."
    text = DEFAULT_QLM_TEMPLATE.replace("{document}", document) + " " + query
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == bos and ids[-1] == eos
    scorer = QueryLikelihoodScorer(lm, tokenizer)
    assert scorer.prompt_ids([query], [document]) == [ids]
    np.testing.assert_allclose(scorer.score_pairs([query], [document]), [_naive_mean_log_prob(lm, tokenizer, text, query)], atol=TOLERANCE)


@pytest.mark.parametrize(
    "template, problem",
    [
        ("Passage: {document} {document}\nClaim:", "exactly once"),
        ("Passage:", "exactly once"),
        ("Claim about: {document}", "follow the document"),
    ],
)
def test_a_template_that_cannot_separate_document_and_query_is_an_error(lm, tokenizer, template, problem):
    with pytest.raises(ValueError, match=problem):
        QueryLikelihoodScorer(lm, tokenizer, template=template)


def test_a_custom_template_is_what_the_model_reads(lm, tokenizer):
    scorer = QueryLikelihoodScorer(lm, tokenizer, template="Document: {document}\nSearch query:")
    assert scorer.prompt_ids(["snow"], ["Alps"]) == [tokenizer("Document: Alps\nSearch query: snow")["input_ids"]]


@pytest.mark.slow
def test_bundled_model_ranks_the_planted_passage_above_an_unrelated_one(bundled_dir, device):
    tokenizer = load_tokenizer(bundled_dir)
    scorer = QueryLikelihoodScorer(load_causal_lm(bundled_dir, device, "float32"), tokenizer)
    unrelated = "Opera: The opera premiered in Vienna in 1786 to a full house."
    cases = [
        ("Arctic sea ice is shrinking.", "Sea ice: Arctic sea ice extent has declined sharply since satellite records began in 1979."),
        ("Sea levels are rising because of global warming.",
         "Sea level rise: Global mean sea level has risen about 20 cm since 1900, driven by thermal expansion and melting ice."),
        ("Coral reefs are bleaching as oceans warm.", "Coral bleaching: Marine heatwaves have caused mass bleaching of coral reefs worldwide."),
    ]
    claims = [c for c, _ in cases for _ in range(2)]
    documents = [d for _, relevant in cases for d in (relevant, unrelated)]
    scores = scorer.score_pairs(claims, documents).reshape(-1, 2)
    assert (scores[:, 0] > scores[:, 1]).all(), scores

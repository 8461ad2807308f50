"""Batches of a fixed size, or filled up to a token budget sized for the device: the same scores either way."""

import numpy as np
import pytest

from rerank_audit.models.batching import Batching, batching_for, token_budget
from rerank_audit.models.loading import load_causal_lm, load_tokenizer
from rerank_audit.models.scoring import QueryLikelihoodScorer, YesNoScorer
from rerank_audit.models.settings import ScoringSettings

QUERIES = ["glacier retreat alps", "glacier retreat alps", "sea level venice", "sea level venice", "co2 flux", "snow"]
DOCUMENTS = [
    "Glacier mass balance in the Alps from 1960 to 2020, with retreat rates per decade.",
    "Snow cover.",
    "Hourly sea level at the Venice tide gauge.",
    "A long record of sea level at Venice and Trieste from tide gauges and satellite altimetry over the Adriatic.",
    "Eddy covariance CO2 flux over a boreal forest.",
    "Daily snow depth.",
]


def test_a_token_budget_fills_each_batch_by_its_longest_sequence():
    # Longest first: [10, 8] cost 2 x 10 = 20 <= 20; then [5, 5, 2] cost 3 x 5 = 15.
    assert Batching(tokens=20).split([10, 8, 5, 5, 2]) == [range(0, 2), range(2, 5)]
    # 5 positions of cached prefix: [10] costs 15 (two would cost 30); [8] 13; [5] 10, [5, 5] 20; [2] 7.
    assert Batching(tokens=20).split([10, 8, 5, 5, 2], extra=5) == [range(0, 1), range(1, 2), range(2, 4), range(4, 5)]
    assert Batching(tokens=4).split([10, 3]) == [range(0, 1), range(1, 2)]  # too long alone: a batch of one
    assert Batching(rows=2).split([10, 8, 5, 5, 2]) == [range(0, 2), range(2, 4), range(4, 5)]


def test_a_fixed_batch_size_overrides_the_token_budget(model_and_tokenizer):
    model, _ = model_and_tokenizer
    assert batching_for(ScoringSettings(batch_size=16, batch_tokens=4096), model) == Batching(rows=16)
    assert batching_for(ScoringSettings(batch_tokens=4096), model) == Batching(tokens=4096)
    assert batching_for(ScoringSettings(), model).tokens == token_budget(model)


def test_the_cpu_budget_is_the_last_level_cache_over_one_layers_activations_per_token(tiny_lm_dir, monkeypatch):
    from rerank_audit.models import batching

    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")  # the CPU's budget, also on a GPU machine
    config = model.config
    per_token = (4 * config.hidden_size + 2 * config.intermediate_size) * 4  # float32
    monkeypatch.setattr(batching, "_last_level_cache_bytes", lambda: 1000 * per_token)
    assert token_budget(model) == 1000
    monkeypatch.setattr(batching, "_last_level_cache_bytes", lambda: 10 * per_token)
    assert token_budget(model) == batching.TOKEN_BOUNDS[0]  # never below the floor


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_lm_dir, device):
    return load_causal_lm(tiny_lm_dir, device, "float32"), load_tokenizer(tiny_lm_dir)


@pytest.mark.parametrize("family", [YesNoScorer, QueryLikelihoodScorer])
def test_token_budget_batches_score_as_one_pair_at_a_time(model_and_tokenizer, family, monkeypatch):
    model, tokenizer = model_and_tokenizer
    sizes = []  # rows of every forward pass, recorded where the engine plans its batches
    split = Batching.split
    monkeypatch.setattr(Batching, "split", lambda self, *a, **k: sizes.extend(len(r) for r in split(self, *a, **k)) or split(self, *a, **k))
    for prefix_reuse in (True, False):
        alone = family(model, tokenizer, settings=ScoringSettings(batch_size=1, prefix_reuse=prefix_reuse)).score_pairs(QUERIES, DOCUMENTS)
        for tokens in (60, 200, 400, 100_000):  # one pair per batch, a few (with mixed cached prefixes), all at once
            scorer = family(model, tokenizer, settings=ScoringSettings(batch_tokens=tokens, prefix_reuse=prefix_reuse))
            np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), alone, atol=1e-4, rtol=0)
    assert any(1 < size < len(QUERIES) for size in sizes)  # partly filled batches were scored too


def test_each_batch_pays_for_the_widest_cached_prefix_among_its_own_rows():
    # Suffixes [6, 5, 5, 4] with prefixes [0, 0, 10, 0]: [6, 5] cost 2 x 6 = 12; adding the third
    # (prefix 10) would cost 3 x (6 + 10) = 48 > 20, so it starts a batch: 1 x 15, then with [4]: 2 x (5 + 10) = 30 > 20.
    assert Batching(tokens=20).split([6, 5, 5, 4], extra=[0, 0, 10, 0]) == [range(0, 2), range(2, 3), range(3, 4)]

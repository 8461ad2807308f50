"""Batches of a fixed size, or filled up to a token budget sized for the device: the same scores either way."""

import numpy as np
import pytest

from rerank_audit.models import batching as batching_module
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


def test_a_cached_prefix_position_counts_its_weight_against_each_bound():
    # tokens 20, a prefix position 0.5: [6, 5] cost 2 x 6 = 12; with the third (10 prefix positions) 3 x (6 + 5) = 33 > 20;
    # [5 | 10, 4] 2 x (5 + 5) = 20. Counted in full, 2 x (5 + 10) = 30 > 20 splits them (the test above).
    assert Batching(tokens=20, prefix_weight=0.5).split([6, 5, 5, 4], extra=[0, 0, 10, 0]) == [range(0, 2), range(2, 4)]
    # tokens 21, weight 0.1: [6, 5, 5 | 10] 3 x (6 + 1) = 21; the fourth 4 x 7 = 28 > 21
    assert Batching(tokens=21, prefix_weight=0.1).split([6, 5, 5, 4], extra=[0, 0, 10, 0]) == [range(0, 3), range(3, 4)]
    # the memory's bound, with its own weight, holds too: [6, 5] 12 <= 13 in both; [5 | 10, 4] 2 x (5 + 1) = 12 <= 20
    # in cache but 2 x (5 + 0.5 x 10) = 20 > 13 in memory (at the cache's weight it would pass: 12 <= 13)
    both = Batching(tokens=20, prefix_weight=0.1, memory=(13, 0.5))
    assert both.split([6, 5, 5, 4], extra=[0, 0, 10, 0]) == [range(0, 2), range(2, 3), range(3, 4)]


def test_the_prefix_weights_are_the_bytes_of_a_cached_position_against_a_run_token(tiny_lm_dir):
    from rerank_audit.models.batching import TokenCost

    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    cache, activations, _ = _tiny_costs(model)
    cost = TokenCost.of_model(model)
    # memory: a row's cached position keeps its keys and values in both layers (cache); a run token also its activations
    assert cost.prefix_weight_in_memory == pytest.approx(cache / (cache + activations))
    # the CPU cache: one layer at a time reads that layer's keys and values of the position (2 heads x 8, twice, float32)
    assert cost.prefix_weight_in_cache == pytest.approx((2 * 2 * 8 * 4) / activations)


def test_a_fixed_batch_size_overrides_the_token_budget(model_and_tokenizer):
    model, _ = model_and_tokenizer
    rows = batching_for(ScoringSettings(batch_size=16, batch_tokens=4096), model)
    assert (rows.rows, rows.tokens) == (16, None)
    tokens = batching_for(ScoringSettings(batch_tokens=4096), model)
    assert (tokens.rows, tokens.tokens, tokens.prefix_tokens) == (None, 4096, 4096)
    assert batching_for(ScoringSettings(), model).tokens == token_budget(model)


def _tiny_costs(model, width=4):
    """Per-token bytes of the tiny Llama (hidden 32, MLP 64, 2 layers, 2 of 4 heads for keys/values, head dim 8), by hand."""
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_key_value_heads, c.num_attention_heads) == (32, 64, 2, 2, 4)
    cache = 2 * 2 * (2 * 8) * width  # keys and values, 2 layers, 2 heads x 8
    activations = (3 * 32 + 2 * 16 + 4 * 64) * width  # hidden x3, k and v, the MLP's gate, up, activation and product
    fixed = 1024 * c.vocab_size * (4 + 4 + width)  # float32 logits, their log-sum-exp temporary, the model-dtype original
    return cache, activations, fixed


@pytest.fixture
def machine(monkeypatch):
    """The machine the budget reads, set by the test: its cache, MemAvailable, cgroup and this process's resident memory."""
    from rerank_audit.models import batching

    facts = {"cache": 64 << 20, "available": 16 << 30, "cgroup": None, "resident": 1 << 30}
    monkeypatch.setattr(batching, "_last_level_cache_bytes", lambda: facts["cache"])
    monkeypatch.setattr(batching, "_meminfo_bytes", lambda field: facts["available"] if field == "MemAvailable" else None)
    monkeypatch.setattr(batching, "_cgroup_headroom", lambda: facts["cgroup"])
    monkeypatch.setattr(batching, "_resident_bytes", lambda: facts["resident"])
    return facts


def test_the_cpu_budget_is_the_last_level_cache_over_one_layers_activations_per_token(tiny_lm_dir, machine):
    from rerank_audit.models import batching

    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")  # the CPU's budget, also on a GPU machine
    _, activations, _ = _tiny_costs(model)
    machine["cache"] = 1000 * activations
    assert token_budget(model) == 1000
    machine["cache"] = 10 * activations
    assert token_budget(model) == batching.TOKEN_BOUNDS[0]  # never below the floor


def test_the_budget_is_bounded_by_the_least_memory_the_job_has_and_says_which(tiny_lm_dir, machine):
    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    cache, activations, fixed = _tiny_costs(model)
    per_token = 2 * cache + activations  # the batch's cache and activations, and as many cached prefix positions
    machine["cache"] = 1 << 40  # the CPU cache bounds nothing here
    machine["available"] = 2 * (fixed + 5000 * per_token)  # half of it is the scorer's: 5000 tokens
    batching = batching_for(ScoringSettings(), model)
    assert (batching.tokens, batching.prefix_tokens) == (5000, 5000)
    assert "bounded by memory" in batching.reason and "MemAvailable" in batching.reason
    machine["cgroup"] = 2 * (fixed + 3000 * per_token)  # a cgroup with less headroom bounds it
    assert token_budget(model) == 3000 and "cgroup" in batching_for(ScoringSettings(), model).reason
    # the job's own memory: mem_mb less what the job holds besides its batches (holds_bytes, counted where the scorer is
    # loaded), never its resident memory, which grows with the blocks the allocator keeps and differs between runs
    machine["cgroup"], machine["available"] = None, 16 << 30
    expected = ((64 << 20) // 2 - fixed) // per_token
    for resident in (1 << 30, 3 << 30):
        machine["resident"] = resident
        batching = batching_for(ScoringSettings(memory_mb=1000 + 64, holds_bytes=1000 << 20), model)
        assert batching.tokens == expected and "mem_mb 1064" in batching.reason and "counted" in batching.reason
    # without a count (a training job's dev scoring: the trainer holds more than the scorer), its resident memory
    batching = batching_for(ScoringSettings(memory_mb=3072 + 64), model)
    assert batching.tokens == expected and "resident" in batching.reason


def test_a_loaded_scorer_counts_the_runtime_and_every_copy_of_its_weights(tiny_lm_dir):
    """What a scoring job holds besides its batches, as its rule declares it: the runtime and the weights by hand (the tiny
    Llama: tied embeddings, 2 layers; norms left out, as the rule leaves them), twice for a full fine-tune scored against
    its base (a DPO-trained method's policy and reference)."""
    from rerank_audit.models.scoring import load_scorer

    weights = 4 * (400 * 32 + 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64))  # float32: embeddings; q, o; k, v; gate, up, down
    settings = ScoringSettings(memory_mb=4000, dtype="float32", device="cpu")
    for method, copies in [("zeroshot", 1), ("dpo", 2)]:
        scorer = load_scorer(method, tiny_lm_dir, base_model=tiny_lm_dir, settings=settings)
        assert scorer.settings.holds_bytes == batching_module.RUNTIME_BYTES + copies * weights, method


def test_a_cache_bounded_budget_keeps_the_memorys_bound_and_caches_prefixes_by_memory(tiny_lm_dir, machine):
    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    cache, activations, fixed = _tiny_costs(model)
    machine["cache"] = 1000 * activations
    machine["available"] = 2 * (fixed + 5000 * (2 * cache + activations))
    batching = batching_for(ScoringSettings(), model)
    assert (batching.tokens, batching.prefix_tokens) == (1000, 5000)  # prefixes cached by what memory holds
    assert batching.prefix_weight == pytest.approx((2 * 2 * 8 * 4) / activations)
    assert batching.memory == (5000, pytest.approx(cache / (cache + activations)))
    machine["cache"] = 1 << 40  # memory bounds the batch: its own weight, no second bound
    batching = batching_for(ScoringSettings(), model)
    assert (batching.tokens, batching.memory, batching.prefix_weight) == (5000, None, pytest.approx(cache / (cache + activations)))


def test_generation_is_bounded_by_the_jobs_memory_not_the_cpu_cache(tiny_lm_dir, machine):
    """A generation step runs one token a row: its batches fill the memory, where scoring's stop at the cache."""
    from rerank_audit.models.batching import generation_batching

    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    cache, activations, fixed = _tiny_costs(model)
    machine["cache"] = 1000 * activations  # scoring: 1000 tokens a batch
    machine["available"] = 2 * (fixed + 5000 * (2 * cache + activations))  # half of it: 5000 tokens
    assert token_budget(model) == 1000
    generation = generation_batching(model, None)
    assert (generation.rows, generation.tokens) == (None, 5000) and "MemAvailable" in generation.reason
    # prompts of 900, 600, 500 and 100 tokens, 100 new ones each; a batch costs rows x (its longest + 100):
    # all four cost 4 x 1000 <= 5000; at 2500 tokens two by two (2 x 1000, then 2 x 600)
    assert generation.split([900, 600, 500, 100], extra=100) == [range(0, 4)]
    assert Batching(tokens=2500).split([900, 600, 500, 100], extra=100) == [range(0, 2), range(2, 4)]


def test_a_set_budget_that_the_memory_cannot_hold_is_kept_with_a_warning(tiny_lm_dir, machine, caplog):
    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    machine["available"] = 1 << 20
    assert batching_for(ScoringSettings(batch_tokens=100_000), model).tokens == 100_000
    assert "batch_tokens 100000 needs" in caplog.text


def test_a_rules_declared_memory_gives_its_job_the_planned_budget(tiny_lm_dir, machine):
    """mem_mb from scoring_memory_mb(tokens=T): a job holding the runtime and the weights is left T tokens."""
    import json

    from rerank_audit.models.batching import RUNTIME_BYTES, parameter_count, scoring_memory_mb

    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    config = json.loads((tiny_lm_dir / "config.json").read_text())
    assert parameter_count(config) == sum(p.numel() for p in model.parameters() if p.dim() > 1)  # all but the norms
    machine["cache"] = 1 << 40
    mem_mb = scoring_memory_mb(config, 4, tokens=6000)
    holds = RUNTIME_BYTES + 4 * parameter_count(config)  # what a loaded scorer counts (test_a_loaded_scorer_counts_...)
    assert 6000 <= batching_for(ScoringSettings(memory_mb=mem_mb, holds_bytes=holds), model).tokens <= 6000 + 2**20 // (2 * sum(_tiny_costs(model)[:2]))


def test_the_bundled_models_scoring_job_declares_4321_mb():
    """SmolLM2-135M (its config.json) in float32 at 8192 tokens, by hand: the runtime 700 MiB
    (734,003,200 B); weights 4 x (49152 x 576 tied embeddings + 30 x (2 x 576 x 576 q/o +
    2 x 576 x 192 k/v + 3 x 576 x 1536 MLP)) = 4 x 134,479,872 = 537,919,488 B; working memory
    (1024 x 49152 x 12 logits + 8192 x (2 x 46,080 cache + 33,024 activations)) / 0.5 =
    3,258,974,208 B; in all 4,530,896,896 B = 4320.99 MiB."""
    from rerank_audit.models.batching import scoring_memory_mb

    config = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
              "num_hidden_layers": 30, "vocab_size": 49152, "tie_word_embeddings": True}
    assert scoring_memory_mb(config, 4) == 4321
    assert scoring_memory_mb(config, 4, copies=2) == 4834  # a second copy of the weights: 537,919,488 B = 513 MiB more


def test_cgroup_headroom_reads_v2_and_v1_and_no_limit(tmp_path):
    from rerank_audit.models.batching import _cgroup_headroom

    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "memory.max").write_text("4294967296\n")
    (tmp_path / "v2" / "memory.current").write_text("1073741824\n")
    assert _cgroup_headroom(tmp_path / "v2") == 3 << 30
    (tmp_path / "v2" / "memory.max").write_text("max\n")
    assert _cgroup_headroom(tmp_path / "v2") is None
    (tmp_path / "v1" / "memory").mkdir(parents=True)
    (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").write_text("2147483648\n")
    (tmp_path / "v1" / "memory" / "memory.usage_in_bytes").write_text("536870912\n")
    assert _cgroup_headroom(tmp_path / "v1") == (2 << 30) - (512 << 20)
    (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert _cgroup_headroom(tmp_path / "v1") is None
    assert _cgroup_headroom(tmp_path / "none") is None


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


def test_mixed_singleton_and_long_prefix_groups_score_as_alone_with_every_chunk_cache_within_its_bound(model_and_tokenizer, monkeypatch):
    """The workload that ran an explain job out of memory: many documents scored once (no own
    prefix) beside documents scored for many queries (a long shared prompt). Each chunk's cached
    prefixes, padding included, stay within prefix_tokens, and the scores equal each pair run
    alone, without prefix reuse, in float32."""
    from rerank_audit.models.scoring import engine

    model, tokenizer = model_and_tokenizer
    text = "Glacier mass balance in the Alps, retreat rates per decade, and snow cover in spring. " * 2
    long_documents = [f"{site} {text}" for site in ("Aletsch", "Rhone", "Gorner", "Morteratsch", "Pasterze", "Hintereis", "Mer de Glace", "Argentiere")]
    queries, documents = [], []
    for k, document in enumerate(long_documents):  # documents scored for a few masked queries each
        queries += ["glacier retreat alps", "glacier alps", "retreat", "snow cover spring"][: 2 + k % 3]
        documents += [document] * (2 + k % 3)
    for k in range(12):  # masked documents, each scored once
        queries.append("glacier retreat alps")
        documents.append(" ".join(text.split()[k:]))
    stored = []
    encode = engine._encode_prefixes

    def recording(*args, **kwargs):
        cache = encode(*args, **kwargs)
        stored.append(cache.rests[0][0].shape[0] * cache.rests[0][0].shape[2] if cache.rests else 0)  # rows x widest rest
        return cache

    monkeypatch.setattr(engine, "_encode_prefixes", recording)
    alone = QueryLikelihoodScorer(model, tokenizer, settings=ScoringSettings(batch_size=1, prefix_reuse=False)).score_pairs(queries, documents)
    prompt = len(tokenizer(f"Dataset description: {long_documents[0]}")["input_ids"])
    tokens = 5 * prompt // 2  # the cached prompts of two long documents fit, three do not
    batched = QueryLikelihoodScorer(model, tokenizer, settings=ScoringSettings(batch_tokens=tokens)).score_pairs(queries, documents)
    assert np.abs(batched - alone).max() <= 1e-5
    assert sum(positions > 0 for positions in stored) > 1  # several chunks with cached rests
    assert all(positions <= tokens for positions in stored), stored  # rows x widest rest: padding counted


# Peak resident memory of the explain workload below with the code before the fix: 8.2 GB under a
# 12 GB address-space cap (the whole job, 16 pairs at a 46,811-token budget, was killed at 9.6 GB).
# The job is given 4 GiB, as a rule declares its mem_mb: that is what it may hold, whatever the cache says.
EXPLAIN_PEAK_BOUND = 4 << 30


@pytest.mark.slow
def test_explaining_long_claims_over_long_paragraphs_stays_under_4_gb_with_a_480_mb_cache_budget(bundled_dir, climate_fever):
    """Issue 32: a query-likelihood explain job was killed at 21.5 GB when sysfs reported a 480 MB
    cache. The workload that reproduced it (bench/explain_memory.py: one long claim, two relevant
    and two non-relevant long paragraphs, SHAP at the pipeline's settings) in its own process, its
    peak resident memory from getrusage, under a 12 GB address-space cap, within the job's 4 GiB."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "explain_memory.py"
    command = [sys.executable, str(script), "--run", "--family", "qlm", "--model", str(bundled_dir), "--claims-file", str(climate_fever),
               "--cache-mb", "480", "--cap-gib", "12", "--memory-mb", str(EXPLAIN_PEAK_BOUND >> 20)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["completed"], result
    assert result["masked_pairs"] > 1000  # the explanation ran its masked texts through the scorer
    assert result["peak_rss_bytes"] <= EXPLAIN_PEAK_BOUND, f"peak {result['peak_rss_bytes'] / 2**30:.2f} GiB"


def test_the_positions_a_head_reads_are_each_rows_columns_with_the_token_after_them():
    from rerank_audit.models.scoring.engine import read_positions

    pad = 0
    ids = np.array([[5, 6, 7, pad], [8, 9, pad, pad]])
    # row 0 reads columns 1 and 2 (the last token: followed by padding), row 1 columns 0 and 1
    row, col, following = read_positions(ids, firsts=np.array([1, 0]), stops=np.array([3, 2]), pad_id=pad)
    assert row.tolist() == [0, 0, 1, 1]
    assert col.tolist() == [1, 2, 0, 1]
    assert following.tolist() == [7, pad, 9, pad]


def test_batch_inputs_mask_each_rows_own_cached_prefix_and_continue_its_positions():
    from rerank_audit.models.scoring.engine import batch_inputs

    inputs = batch_inputs([[11, 12], [13]], width=3, offsets=[3, 1], pad_id=0)
    assert inputs.ids.tolist() == [[11, 12], [13, 0]]
    assert inputs.mask.tolist() == [[1, 1, 1, 1, 1], [1, 0, 0, 1, 0]]
    assert inputs.positions.tolist() == [[3, 4], [1, 2]]


def test_token_ids_are_the_tokenizers_own_call(tokenizer):
    from rerank_audit.models.scoring.engine import token_ids

    texts = ["Sea level at Venice.", " glacier  retreat\n", ""]
    assert token_ids(tokenizer, texts) == tokenizer(texts)["input_ids"]


def test_pointwise_prompts_are_one_render_per_pair_also_where_the_template_trims(tokenizer):
    import copy

    from rerank_audit.text import prompts

    queries, documents = [" sea level ", "glacier"], ["Tide gauges at Venice.\n", "  Alps  "]
    trimming = copy.deepcopy(tokenizer)  # as Llama 3's template: the content trimmed, so filling marks in would differ
    trimming.chat_template = tokenizer.chat_template.replace("message['content']", "message['content'] | trim")
    for each in (tokenizer, trimming):
        assert prompts.pointwise_prompts(each, queries, documents) == [prompts.pointwise_prompt(each, q, d) for q, d in zip(queries, documents)]
    assert prompts.pointwise_prompt(trimming, queries[1], documents[1]) != prompts.pointwise_prompt(tokenizer, queries[1], documents[1])


@pytest.mark.parametrize("family", [YesNoScorer, QueryLikelihoodScorer])
def test_packed_padding_free_scores_equal_the_padded_paths(model_and_tokenizer, family):
    """Sequences packed into one row (position_ids restarting per sequence, no mask: transformers builds sdpa's
    block-diagonal mask on the CPU, flash_attention_2 runs it variable-length) score as the padded batches do.
    Tolerance: 1e-4, the padded path's own bound between batch shapes (test_token_budget_batches_score_as_one_pair_at_a_time):
    the same float32 arithmetic, in matmuls of other shapes."""
    from rerank_audit.models.scoring.packing import packed_rows

    model, tokenizer = model_and_tokenizer
    padded = family(model, tokenizer, settings=ScoringSettings(batch_size=1, prefix_reuse=False)).score_pairs(QUERIES, DOCUMENTS)
    lengths = [len(ids) for ids in family(model, tokenizer).prompt_ids(QUERIES, DOCUMENTS)]
    for tokens in (max(lengths) + 1, 2 * max(lengths), 100_000):  # rows of one or two sequences, several, all in one row
        packed = family(model, tokenizer, settings=ScoringSettings(batch_tokens=tokens, packing=True))
        np.testing.assert_allclose(packed.score_pairs(QUERIES, DOCUMENTS), padded, atol=1e-4, rtol=0)
    assert len(packed_rows(lengths, 2 * max(lengths))) < len(QUERIES) and len(packed_rows(lengths, 100_000)) == 1


def test_packing_is_chosen_automatically_only_for_variable_length_attention(model_and_tokenizer):
    from rerank_audit.models.scoring.packing import packs

    model, _ = model_and_tokenizer
    backbone = model.model
    assert backbone.config._attn_implementation == "sdpa" and not packs(backbone, None)  # sdpa would need a dense mask
    assert packs(backbone, True) and not packs(backbone, False)
    original = backbone.config._attn_implementation
    try:
        backbone.config._attn_implementation = "flash_attention_2"
        assert packs(backbone, None)
    finally:
        backbone.config._attn_implementation = original


def test_packed_rows_fill_the_budget_longest_first():
    # lengths 5, 9, 3, 7 and a budget of 12, taken longest first: 9 (9 + 7 > 12), then 7 + 5 (+ 3 > 12), then 3
    from rerank_audit.models.scoring.packing import packed_rows

    assert packed_rows([5, 9, 3, 7], 12) == [[1], [3, 0], [2]]
    assert packed_rows([20, 4], 12) == [[0], [1]]  # a sequence longer than the budget has a row of its own


def _sequences(rows, first=None):
    from rerank_audit.models.scoring.engine import ScoredSequence

    return [ScoredSequence(ids, len(ids) - 1 if first is None else first, len(ids)) for ids in rows]


# Five masked variants of one query's document (the first four tokens: template and query) and a
# second query's. Derived by hand: all five as one cluster share 6 tokens: (6 - 2) + 5 x (10 - 6) = 24
# beyond the 2 every sequence shares; split where the variants keep 8, {S1, S2, S5} costs (8 - 2) + 3 x 2
# = 12 and {S3, S6} (8 - 2) + 2 x 2 = 10: 22; S4 alone 10 - 2 = 8. Run tokens: 2 + 22 + 8 = 32, where
# one cluster per query (the plan before) ran 2 + 24 + 8 = 34.
CLUSTERED = {
    "S1": [1, 2, 3, 4, 10, 11, 12, 13, 14, 20],
    "S2": [1, 2, 3, 4, 10, 11, 12, 13, 15, 20],
    "S3": [1, 2, 3, 4, 10, 11, 16, 17, 18, 20],
    "S4": [1, 2, 5, 6, 7, 8, 9, 9, 9, 20],
    "S5": [1, 2, 3, 4, 10, 11, 12, 13, 16, 20],
    "S6": [1, 2, 3, 4, 10, 11, 16, 17, 19, 20],
}


def test_prefix_clusters_split_a_querys_variants_where_they_keep_more_of_the_document():
    from rerank_audit.models.scoring.engine import plan_chunks, prefix_clusters

    names = list(CLUSTERED)
    clusters = prefix_clusters(_sequences(CLUSTERED.values()), common=2)
    assert {frozenset(names[i] for i in members): prefix for members, prefix in clusters} == {
        frozenset({"S1", "S2", "S5"}): 8, frozenset({"S3", "S6"}): 8, frozenset({"S4"}): 2,
    }
    assert plan_chunks(_sequences(CLUSTERED.values()), Batching(tokens=1000, prefix_tokens=1000), prefix_reuse=True).run_tokens == 32


def test_a_clusters_prefix_holds_the_read_positions_whose_following_token_is_shared():
    from rerank_audit.models.scoring.engine import prefix_clusters

    # S1 and S2 share 8 tokens. The head reading only their last position (yes/no), the cluster
    # caches all 8. Reading from position 5 on (a document's tokens after its prompt), position 7
    # predicts 14 in one and 15 in the other: the prefix stops at 7, and positions 5 and 6 (their
    # following tokens 12 and 13 shared) are read once for both: (7 - 2) + 2 x 3 = 11 < 2 x 8 alone.
    rows = [CLUSTERED["S1"], CLUSTERED["S2"]]
    assert prefix_clusters(_sequences(rows), common=2) == [([0, 1], 8)]
    assert prefix_clusters(_sequences(rows, first=5), common=2) == [([0, 1], 7)]


def _masked_variants() -> tuple[list[str], list[str]]:
    """(queries, documents): a document with 1 or 3 words removed at every other position, and other pairs."""
    words = "Glacier mass balance in the Alps from 1960 to 2020 with retreat rates per decade and snow cover".split()
    documents = [" ".join(words[:k] + words[k + width :]) for width in (1, 3) for k in range(0, len(words), 2)] + [" ".join(words)]
    queries = ["glacier retreat alps"] * len(documents) + ["sea level venice"] * 3
    return queries, documents + DOCUMENTS[2:4] + [" ".join(words)]


@pytest.mark.parametrize("family", [YesNoScorer, QueryLikelihoodScorer])
def test_masked_variants_of_a_document_score_as_each_alone(model_and_tokenizer, family):
    """Explanations score a document with words removed: variants that keep its first words share
    them in a cluster's cached prefix (several clusters, each continuing at its own position)."""
    model, tokenizer = model_and_tokenizer
    queries, documents = _masked_variants()
    alone = family(model, tokenizer, settings=ScoringSettings(batch_size=1, prefix_reuse=False)).score_pairs(queries, documents)
    scorer = family(model, tokenizer, settings=ScoringSettings(batch_tokens=400))
    np.testing.assert_allclose(scorer.score_pairs(queries, documents), alone, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", [YesNoScorer, QueryLikelihoodScorer])
def test_masked_variants_score_as_each_alone_at_a_budget_that_weighs_cached_positions(model_and_tokenizer, family, machine):
    """The auto budget where the memory bounds the batch (every machine) and, on the CPU, where its cache
    does (a cached position weighs 1/12 of a token there, the memory's bound kept beside it): many rows over
    long cached prefixes share a batch, and each scores as it does alone."""
    model, tokenizer = model_and_tokenizer
    queries, documents = _masked_variants()
    alone = family(model, tokenizer, settings=ScoringSettings(batch_size=1, prefix_reuse=False)).score_pairs(queries, documents)
    machine["cache"] = 512 * _tiny_costs(model)[1]  # 512 tokens of the tiny model's activations
    machine["available"] = 1 << 30
    batching = batching_for(ScoringSettings(), model)
    if next(model.parameters()).device.type == "cpu":
        assert batching.prefix_weight < 0.1 and batching.memory is not None
    np.testing.assert_allclose(family(model, tokenizer, settings=ScoringSettings()).score_pairs(queries, documents), alone, atol=1e-4, rtol=0)


def test_document_log_probs_of_masked_variants_read_their_shared_first_words_once(model_and_tokenizer):
    """DPO's document likelihood reads every document token: variants that keep a document's first
    words read those positions once, in their cluster's prefix. Each variant's sum equals its own
    computation alone, without a shared prefix; so do members that read from a later position,
    or stop reading inside the prefix."""
    from functools import partial

    from rerank_audit.models.scoring.engine import ScoredSequence, plan_chunks, sum_head_over_positions, token_log_probs

    model, tokenizer = model_and_tokenizer
    prompt = tokenizer("Claim: glaciers in the Alps are retreating. Relevant passage:")["input_ids"]
    words = "Glacier mass balance in the Alps from 1960 to 2020 with retreat rates per decade and snow cover".split()
    documents = [" ".join(words[:k] + words[k + 2 :]) for k in range(0, len(words), 2)] + [" ".join(words)]
    sequences = []
    for document in documents:
        ids = prompt + tokenizer(" " + document, add_special_tokens=False)["input_ids"]
        sequences.append(ScoredSequence(ids, len(prompt) - 1, len(ids) - 1))
    whole = sequences[-1].ids  # the whole document again, read from a later position, and read only up to one inside the prefix
    sequences += [ScoredSequence(whole, len(prompt) + 3, len(whole) - 1), ScoredSequence(whole, len(prompt) - 1, len(prompt) + 2)]
    head = partial(token_log_probs, model)
    from rerank_audit.models.batching import batching_for

    plan = plan_chunks(sequences, batching_for(ScoringSettings(batch_tokens=400), model.model), prefix_reuse=True)
    assert any(plan.prefix_len[c] > min(sequences[i].first for i in plan.members[c]) for c in plan.members)  # read in a prefix
    alone = [sum_head_over_positions(model.model, [s], head, settings=ScoringSettings(batch_size=1), prefix_reuse=False, pad_id=0)[0] for s in sequences]
    shared = sum_head_over_positions(model.model, sequences, head, settings=ScoringSettings(batch_tokens=400), prefix_reuse=True, pad_id=0)
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=0)

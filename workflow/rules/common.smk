# Helpers shared by all rules: config validation, paths, input functions.
# Nothing imported here loads torch: parsing the Snakefile (a dry run too) stays fast.
import errno
import functools
import os
import re
from types import SimpleNamespace as Namespace

from snakemake.utils import validate

from rerank_audit.config import check_config, control_pairs, dataset_sources, fusion_settings, qlm_template
from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.methods import method
from rerank_audit.models.batching import PLANNED_TOKENS, model_config, scoring_memory_mb
from rerank_audit.models.bundled import BUNDLED_PREFIX, resolve_base_model
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.rerank import FUSED_SUFFIX
from rerank_audit.trainer_kinds import trainer_kind
from rerank_audit.training.settings import TrainingSettings


validate(config, schema="../schemas/config.schema.yaml")
# Before any job: methods are registry entries, controls inherit their source's candidate
# pool and threshold, models_from names a dataset with the same data, measures parse,
# qlm templates hold {document}, fusion names configured methods (rerank_audit.config).
check_config(config)


DATASETS = list(config["datasets"])
# Known-answer controls (derived by rule derive_control) and the datasets read from sources.
CONTROLS = [name for name in DATASETS if "control" in config["datasets"][name]]
SOURCED = [name for name in DATASETS if name not in CONTROLS]
# Aligned control -> its flipped partner; each pair gets a control report.
CONTROL_PAIRS = control_pairs(config["datasets"])


def one_of(names):
    """A wildcard pattern matching exactly ``names``; with none, nothing (Snakemake reads an
    empty pattern as no constraint at all)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def dataset_measure_names(dataset):
    """The measures a dataset is evaluated on: its own list, else evaluate.measures."""
    return config["datasets"][dataset].get("measures", config["evaluate"]["measures"])


def dataset_primary_measure_names(dataset):
    """The measures whose differences are tested (the Holm family): the dataset's own, else evaluate's."""
    return config["datasets"][dataset].get("primary_measures", config["evaluate"]["primary_measures"])


FUSION_WEIGHT, FUSED_METHODS = fusion_settings(config["rerank"], config["methods"])


# Untrained methods (zeroshot, qlm) score the base model as it is, once, at budget "0".
TRAINED_METHODS = [m for m in config["methods"] if method(m).trained]
# train.selection: checkpoints chosen on dev queries; the report draws their dev curves.
SELECTION = "selection" in config["train"]
# probe.probes: [] runs no shortcut probes (config/climate-fever.yaml; config/probes.yaml turns them on).
PROBING = config["probe"]["probes"] != []
BUDGETS = [str(b) for b in config["budgets"]]
MODELS_DIR = "resources/models"
BASE_MODEL = resolve_base_model(config["model"]["base"], MODELS_DIR)
RATIONALE_GENERATOR = resolve_base_model(config["rationale"]["generator"], MODELS_DIR)
# How scorers run (batch, max length, dtype): re-ranking and training fit; explanations.
SCORING = {stage: ScoringSettings.from_config(config, stage).as_dict() for stage in ("rerank", "explain")}
# How each trained method trains: train.defaults under train.methods.{method}, model.dtype, the keys its
# trainer requires (rerank_audit.training.settings), merged once here.
TRAINING = {m: TrainingSettings.for_method(config, m) for m in TRAINED_METHODS}
# Rows of the report: each method, its fused row (rerank.fusion) right after it.
REPORTED_METHODS = [name for m in config["methods"] for name in ([m, m + FUSED_SUFFIX] if m in FUSED_METHODS else [m])]
# "Did training help?": each trained method against its untrained counterpart when that is
# configured too (sft vs zeroshot, qlm_sft vs qlm), and a fused row against the fused counterpart.
UNTRAINED_OF = {m: method(m).untrained for m in TRAINED_METHODS if method(m).untrained in config["methods"]}
UNTRAINED_OF |= {m + FUSED_SUFFIX: r + FUSED_SUFFIX for m, r in UNTRAINED_OF.items() if {m, r} <= set(FUSED_METHODS)}


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(config["methods"]),
    budget="|".join([UNTRAINED_BUDGET, *BUDGETS]),


def named_params(**params):
    """A rule's ``params``, plus ``by_name``: all of them in one dict.

    Snakemake 9.27 compares a job's parameter values as a set, without their names
    (snakemake/snakemake#2212), so it missed a change whose old value still occurred among
    the rule's other parameters and whose new value already did. The dict's repr names every
    value, so any change shows. Callables are resolved per job, as Snakemake resolves them.
    """

    def by_name(wildcards):
        return {name: value(wildcards) if callable(value) else value for name, value in params.items()}

    return {**params, "by_name": by_name}


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


# Keys of the explain section added after studies ran, and their defaults: a job's params leave a key
# out at its default, so that adding it changed no explanation's params (one runs for hours on 2 cores).
EXPLAIN_ADDED = {"players": "pair", "siblings": "absent"}
EXPLAIN = {key: value for key, value in config["explain"].items() if EXPLAIN_ADDED.get(key, object()) != value}


def explain_queries(wildcards):
    return dataset_config(wildcards).get("explain_queries", config["explain"]["queries"])


def dataset_format(wildcards):
    return dataset_config(wildcards)["format"]


def dataset_options(wildcards):
    return dataset_config(wildcards).get("options", {})


def download_path(dataset, role):
    url = config["datasets"][dataset]["download"][role]["url"]
    return f"resources/downloads/{dataset}/{role}/{os.path.basename(url)}"


def source_files(wildcards):
    """Each raw source of a dataset: its configured path, or the download when that path is absent;
    a path with neither stops the DAG naming its config key."""
    return dataset_sources(wildcards.dataset, dataset_config(wildcards), functools.partial(download_path, wildcards.dataset))


def download_spec(wildcards):
    return config["datasets"][wildcards.dataset]["download"][wildcards.role]


def relevance_threshold(wildcards):
    return dataset_config(wildcards).get("relevance_threshold", 1)


def candidate_pool(wildcards):
    """bm25 (the BM25 top retrieve.k) or judged (the query's judged documents)."""
    return dataset_config(wildcards).get("candidates", "bm25")


def models_from(wildcards):
    """The dataset whose trained models this one re-ranks with, or None (its own)."""
    return dataset_config(wildcards).get("models_from")


def model_dataset(wildcards):
    return models_from(wildcards) or wildcards.dataset


def model_splits(wildcards):
    """The splits of the models_from dataset (checked against this dataset's test queries), or nothing."""
    other = models_from(wildcards)
    return [f"results/{other}/split/splits.parquet"] if other else []


def dataset_measures(wildcards):
    return dataset_measure_names(wildcards.dataset)


def primary_measures(wildcards):
    return dataset_primary_measure_names(wildcards.dataset)


def model_dependency(spec, path):
    """A model folder as a file dependency when it is bundled or local; nothing for a hub id."""
    return [path] if spec.startswith(BUNDLED_PREFIX) or os.path.isdir(path) else []


def base_model_input(wildcards):
    return model_dependency(config["model"]["base"], BASE_MODEL)


def generator_input(wildcards):
    return model_dependency(config["rationale"]["generator"], RATIONALE_GENERATOR)


def training_settings(wildcards):
    """The method's TrainingSettings as plain values (rebuilt in the job with TrainingSettings.from_dict)."""
    return TRAINING[wildcards.method].as_dict()


def selection_inputs(wildcards):
    """With train.selection, what the dev measure reads (the dev queries' tables and the split); else nothing."""
    if not SELECTION:
        return {}
    tables = {name: f"results/{wildcards.dataset}/ingest/{name}.parquet" for name in ("corpus", "queries", "qrels")}
    return tables | {"splits": f"results/{wildcards.dataset}/split/splits.parquet"}


def training_configs(wildcards):
    """training_config.json of every trained method and budget of the models the dataset re-ranks with."""
    return [
        f"results/{model_dataset(wildcards)}/models/{m}/{b}/training_config.json"
        for m, b in method_budgets()
        if m in TRAINED_METHODS
    ]


def scoring_beta(wildcards):
    """DPO's β for scoring dpo and dpo_pairs: the beta the method was trained with (its TrainingSettings);
    None for a method whose trainer takes none."""
    return TRAINING[wildcards.method].beta if wildcards.method in TRAINING else None


def dataset_qlm_template(wildcards):
    """The dataset's query-likelihood template (qlm, qlm_sft): its qlm_template, else the scorer's default."""
    return qlm_template(dataset_config(wildcards))


def scoring_template(wildcards):
    """The template the method scores with: the dataset's for the query-likelihood family, None for
    the other methods (so that editing the template re-runs only the query-likelihood jobs)."""
    return dataset_qlm_template(wildcards) if method(wildcards.method).family == "likelihood" else None


def training_table(wildcards):
    return f"results/{wildcards.dataset}/train/{wildcards.budget}/{method(wildcards.method).training_table}.parquet"


def scoring_model(wildcards):
    """What a method scores with: its trained model (named by training_config.json, written
    last; trained on the models_from dataset when one is set), or the base model for the untrained methods."""
    if not method(wildcards.method).trained:
        return base_model_input(wildcards)
    return [f"results/{model_dataset(wildcards)}/models/{wildcards.method}/{wildcards.budget}/training_config.json"]


def scoring_model_dir(wildcards):
    if not method(wildcards.method).trained:
        return BASE_MODEL
    return os.path.dirname(scoring_model(wildcards)[0])


def training_scoring(wildcards):
    """The scoring settings a training reads, and only those (a change of anything else re-trains
    nothing): all of them with train.selection (dev checkpoints are scored), the max length
    for a trainer kind that trains on the tokens it is scored on (lce: no fits_documents), else none."""
    if config["train"].get("selection"):
        return SCORING["rerank"]
    return {} if trainer_kind(method(wildcards.method).trainer).fits_documents else {"max_length": SCORING["rerank"]["max_length"]}



def scorer_params(stage):
    """The params of every rule that loads a method's scorer. They are the model, the method's own
    settings (DPO beta, qlm template) and the stage's ScoringSettings (``scoring``, a dict)."""
    return dict(base_model=BASE_MODEL, model_dir=scoring_model_dir, beta=scoring_beta, template=scoring_template, scoring=SCORING[stage])


# The weights' element size a job's memory is declared for: auto may load float32 (on a CPU
# without fast bf16), so it is declared as float32.
WEIGHT_BYTES = 2 if config["model"]["dtype"] in ("bfloat16", "float16") else 4
# Declared when a model's config.json cannot be read at scheduling (a hub id, offline).
FALLBACK_MEM_MB = 8000


def planned_tokens(stage):
    """The token budget a stage's declared memory is sized for: its set batch_tokens (or
    batch_size x max_length), else PLANNED_TOKENS (rerank_audit.models.batching)."""
    scoring = SCORING[stage]
    if scoring["batch_tokens"] is not None:
        return scoring["batch_tokens"]
    if scoring["batch_size"] is not None and scoring["max_length"]:
        return scoring["batch_size"] * scoring["max_length"]
    return PLANNED_TOKENS


def weight_copies(wildcards):
    """Copies of the base weights a method's scorer holds: two for a DPO-trained method fully
    fine-tuned (its policy and the base as reference), else one (an adapter is disabled instead)."""
    spec = method(wildcards.method)
    return 2 if spec.scored_against_reference and not TRAINING[wildcards.method].lora.enabled else 1


def memory_mb(model, tokens, copies=weight_copies):
    """A rule's resources.mem_mb: what a job scoring with ``model`` at a budget of ``tokens`` needs
    (rerank_audit.models.batching.scoring_memory_mb), read from the model's config.json when the
    job is scheduled. Before its inputs exist (a dry run) Snakemake shows <TBD> and asks again."""

    def mem_mb(wildcards, input):
        missing = [f for f in input if not os.path.exists(f)]
        if missing:
            raise FileNotFoundError(errno.ENOENT, "not built yet", missing[0])
        try:
            shape = model_config(model)
        except Exception:  # a hub id whose config cannot be fetched here
            return FALLBACK_MEM_MB
        return scoring_memory_mb(shape, WEIGHT_BYTES, tokens, copies(wildcards) if callable(copies) else copies)

    return mem_mb


def method_budgets():
    """Every (method, budget) that is re-ranked: untrained methods once, trained methods per budget."""
    return [(m, b) for m in config["methods"] for b in (BUDGETS if method(m).trained else [UNTRAINED_BUDGET])]


def per_method(wildcards, pattern):
    """``pattern`` (with {dataset}, {method}, {budget}) for every re-ranked method and budget."""
    return [pattern.format(dataset=wildcards.dataset, method=m, budget=b) for m, b in method_budgets()]


def runs_to_evaluate(wildcards):
    return [f"results/{wildcards.dataset}/retrieve/bm25.parquet", *reranked_runs(wildcards)]


def faithfulness_tables(wildcards):
    return per_method(wildcards, "results/{dataset}/explain/{method}/{budget}/faithfulness.parquet")


def rationale_tables(wildcards):
    return per_method(wildcards, "results/{dataset}/rationale/{method}/{budget}/rationale_metrics.parquet")


def attribution_tables(wildcards):
    return per_method(wildcards, "results/{dataset}/explain/{method}/{budget}/attributions.parquet")


def rationale_texts(wildcards):
    return per_method(wildcards, "results/{dataset}/rationale/{method}/{budget}/rationales.parquet")


def probe_tables(wildcards):
    """The shortcut-probe table of BM25 (the lexical reference, budget "0") and of every re-ranked method and budget."""
    return [
        f"results/{wildcards.dataset}/probe/bm25/{UNTRAINED_BUDGET}/probes.parquet",
        *per_method(wildcards, "results/{dataset}/probe/{method}/{budget}/probes.parquet"),
    ]


def reranked_runs(wildcards):
    return per_method(wildcards, "results/{dataset}/rerank/{method}/{budget}/run.parquet")


def training_fits(wildcards):
    """training_fit.json of every trained method and budget, of the models the dataset re-ranks with (models_from)."""
    return [
        f"results/{model_dataset(wildcards)}/models/{m}/{b}/training_fit.json"
        for m, b in method_budgets()
        if m in TRAINED_METHODS
    ]


def control_spec(wildcards):
    return dataset_config(wildcards)["control"]


def control_marker(wildcards):
    """The planted word of a known-answer control; None for any other dataset."""
    return (dataset_config(wildcards).get("control") or {}).get("marker")


def control_source(wildcards):
    """The ingested tables, splits and first-stage run of the dataset a control is derived from."""
    source = control_spec(wildcards)["source"]
    return {
        "corpus": f"results/{source}/ingest/corpus.parquet",
        "queries": f"results/{source}/ingest/queries.parquet",
        "qrels": f"results/{source}/ingest/qrels.parquet",
        "splits": f"results/{source}/split/splits.parquet",
        "run": f"results/{source}/retrieve/bm25.parquet",
    }


def flipped_partner(wildcards):
    return CONTROL_PAIRS[wildcards.dataset]


def control_versions(wildcards, pattern):
    """``pattern`` ({dataset}) for an aligned control and its flipped partner, in that order."""
    return [pattern.format(dataset=d) for d in (wildcards.dataset, flipped_partner(wildcards))]


def control_version_tables(wildcards):
    """Per version (aligned, flipped): per-query metrics, placement, attributions, rationales and their faithfulness;
    with probes on, the aligned version's probe tables."""
    tables = {
        "per_query": control_versions(wildcards, "results/{dataset}/evaluate/per_query.parquet"),
        "placement": control_versions(wildcards, "results/{dataset}/ingest/control.parquet"),
    }
    for version, dataset in zip(("aligned", "flipped"), (wildcards.dataset, flipped_partner(wildcards))):
        tables[f"attributions_{version}"] = attribution_tables(Namespace(dataset=dataset))
        tables[f"rationales_{version}"] = rationale_texts(Namespace(dataset=dataset))
        tables[f"faithfulness_{version}"] = faithfulness_tables(Namespace(dataset=dataset))
        tables[f"rationale_metrics_{version}"] = rationale_tables(Namespace(dataset=dataset))
    if PROBING:  # the marker-insertion probe of the aligned version, beside the marker's attribution share
        tables["probes"] = probe_tables(wildcards)
    return tables


def final_outputs():
    """The report of every dataset; without re-ranking methods, the BM25 evaluation."""
    if not config["methods"]:
        return expand("results/{dataset}/evaluate/metrics.md", dataset=DATASETS)
    return [
        *expand("results/{dataset}/report/summary.md", dataset=DATASETS),
        # Named too: turning the probes on after a finished study (config/probes.yaml) must not
        # find the report's summary present and stop there.
        *(expand("results/{dataset}/report/probes.md", dataset=DATASETS) if PROBING else []),
        *expand("results/{dataset}/control/summary.md", dataset=list(CONTROL_PAIRS)),
    ]

"""The experiment configuration: every check a config must pass before any job runs.

``check_config`` runs them all when the Snakefile is parsed (dry runs included), so a wrong
key stops the workflow at once with a message that names the key and the fix, never late
in a job. Imports no torch: a Snakefile parse stays fast.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

import ir_measures
import pandas as pd

from rerank_audit.models.quantization import quantization_problem
from rerank_audit.methods import REGISTRY, check_registry
from rerank_audit.probe.registry import check_probes
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE, check_template
from rerank_audit.trainer_kinds import trainer_kind

logger = logging.getLogger(__name__)
from rerank_audit.training.settings import check_training

# Weight of BM25 in a fused score when the config names none (Zhuang et al. 2023, llm-qlm).
DEFAULT_FUSION_WEIGHT = 0.2
# Keys a control always takes from its source dataset: the
# candidate pool and the relevance threshold decide which documents are whose.
INHERITED = ("candidates", "relevance_threshold")
# Keys a control inherits unless it sets its own.
INHERITED_DEFAULTS = ("measures", "primary_measures")


def load_config(*paths) -> dict[str, Any]:
    """The config that Snakemake builds from ``--configfile`` files: each file deep-merged over the last.

    For tools outside the workflow (the benchmarks), so they run with the pipeline's settings.
    """
    import yaml

    def merge(base: dict, over: Mapping) -> dict:
        for key, value in over.items():
            base[key] = merge(dict(base.get(key) or {}), value) if isinstance(value, Mapping) and isinstance(base.get(key), Mapping) else value
        return base

    config: dict[str, Any] = {}
    for path in paths:
        with open(path) as handle:
            config = merge(config, yaml.safe_load(handle) or {})
    return config


def check_config(config: dict[str, Any]) -> None:
    """Check ``config`` (already validated against the JSON schema) as a whole; fill what controls inherit.

    Raises ValueError naming the config key and the fix.
    """
    datasets = config["datasets"]
    resolve_controls(datasets)
    control_pairs(datasets)
    check_registry()
    check_methods(config["methods"])
    check_probes(config["probe"]["probes"] or [])
    untrainable = [m for m in config["train"]["methods"] if m not in REGISTRY or not REGISTRY[m].trained]
    if untrainable:
        raise ValueError(f"train.methods: {untrainable} are not trained methods; set hyper-parameters only for {[m for m, s in REGISTRY.items() if s.trained]}")
    check_models_from(datasets)
    for name, spec in datasets.items():
        where = f"datasets.{name}"
        check_measures(spec.get("measures", config["evaluate"]["measures"]), spec.get("primary_measures", config["evaluate"]["primary_measures"]), where)
        try:
            check_template(qlm_template(spec))
        except ValueError as error:
            raise ValueError(f"{where}.qlm_template: {error}") from None
    fusion_settings(config["rerank"], config["methods"])
    check_split_sizes(config["split"])
    check_selection(config["train"], config["split"])
    check_scorer_token_length(config["train"])
    check_training(config)
    problem = quantization_problem(config["model"].get("quantization", "auto"))
    if problem:  # the submitting machine may lack what the GPU nodes have; each train job checks at its start
        logger.warning("%s (here; each train job checks again on its own machine and stops there if so)", problem)
    if config["rerank"]["depth"] > config["retrieve"]["k"] and any(spec.get("candidates", "bm25") == "bm25" for spec in datasets.values()):
        raise ValueError(
            f"rerank.depth ({config['rerank']['depth']}) is above retrieve.k ({config['retrieve']['k']}): the methods would "
            "re-rank fewer BM25 candidates than asked; lower rerank.depth or raise retrieve.k"
        )


def split_size(value: float, key: str, *, zero: bool) -> None:
    """Raise unless ``value`` is a share in (0, 1) or a whole number of queries (0 only where ``zero``).

    YAML reads ``1.0`` as a float: it would mean one query, not "all of them", so a whole
    number with a decimal point is refused rather than guessed.
    """
    fraction = isinstance(value, float) and 0 < value < 1
    whole = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or (zero and value == 0))
    if not (fraction or whole):
        allowed = "0, " if zero else ""
        raise ValueError(
            f"{key}: {value!r} is neither a share of the queries in (0, 1) nor a whole number of queries; write e.g. 0.5 for "
            f"half of them, or {allowed}1, 2, ... for a count (1.0 would mean one query; there is no 'all' for a split)"
        )


def check_split_sizes(split: Mapping[str, Any]) -> None:
    split_size(split["test"], "split.test", zero=False)
    split_size(split["dev"], "split.dev", zero=True)


def check_selection(train: Mapping[str, Any], split: Mapping[str, Any]) -> None:
    """Raise unless ``train.selection`` (when set) has dev queries to choose on and a measure that parses."""
    selection = train.get("selection")
    if selection is None:
        return
    if split["dev"] == 0:
        raise ValueError(
            "train.selection chooses each method's checkpoint on dev queries, but split.dev is 0 (no dev queries); "
            "set split.dev (e.g. 0.2 or 100 queries, taken from the training queries), or remove train.selection"
        )
    check_measures([selection["measure"]], [], "train.selection.measure")


def check_scorer_token_length(train: Mapping[str, Any]) -> None:
    """Raise when a max_length is set for a method whose trainer trains on the scorer's tokens (lce: no ``fits_documents``)."""
    set_for = [name for name, hyper in train["methods"].items() if not trainer_kind(REGISTRY[name].trainer).fits_documents and "max_length" in hyper]
    if set_for:
        raise ValueError(
            f"train.methods.{set_for[0]}.max_length: {set_for[0]} trains on the tokens it is scored on, cut to "
            "rerank.max_length; remove the key (set rerank.max_length instead)"
        )


def check_methods(methods: list[str]) -> None:
    """Raise unless every configured method is an entry of the method registry."""
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise ValueError(f"methods: {unknown} are not methods of rerank-audit; use some of {', '.join(REGISTRY)} (rerank_audit/methods.py)")


def check_measures(names: list[str], primary: list[str], where: str) -> None:
    """Raise unless every name in ``names`` parses and ``primary`` is a subset of ``names``.

    ``where`` names the config block in the message (e.g. "datasets.demo").
    """
    for name in names:
        try:
            ir_measures.parse_measure(name)
        except (NameError, ValueError, SyntaxError, TypeError) as error:
            raise ValueError(f"{where}: measure {name!r} is not an ir-measures name ({error}); write it as e.g. nDCG@10 or AP(rel=2)") from error
    missing = [m for m in primary if m not in names]
    if missing:
        raise ValueError(
            f"{where}: primary measures {missing} are not among its measures {list(names)}; add them to "
            f"{where}.measures (or evaluate.measures), or set {where}.primary_measures"
        )


def fusion_settings(rerank: dict, methods: list[str]) -> tuple[float, list[str]]:
    """(BM25 weight, fused methods) of the ``rerank`` config section.

    ``rerank.fusion`` is a list of methods (weight ``rerank.fusion_weight``, default
    ``DEFAULT_FUSION_WEIGHT``) or ``{weight, methods}``; absent: no fusion. Every fused
    method must be one of ``methods`` (the config's); the error names the key and the fix.
    """
    fusion = rerank.get("fusion") or []
    weight = rerank.get("fusion_weight", DEFAULT_FUSION_WEIGHT)
    if isinstance(fusion, dict):  # its own weight wins over rerank.fusion_weight (which the schema defaults)
        weight, fusion = fusion.get("weight", weight), fusion.get("methods", [])
    unfusable = [m for m in fusion if m in REGISTRY and not REGISTRY[m].fusable]
    if unfusable:
        raise ValueError(f"rerank.fusion names {unfusable}, whose scores cannot be fused (rerank_audit.methods); remove them")
    unknown = [m for m in fusion if m not in methods]
    if unknown:
        raise ValueError(f"rerank.fusion names {unknown}, which are not in methods ({methods}); add them to methods or remove them from rerank.fusion")
    return float(weight), list(dict.fromkeys(fusion))


def resolve_controls(datasets: dict[str, dict]) -> None:
    """Check every control entry of the config's ``datasets`` and fill what it inherits, in place.

    A control names its ``source`` (another dataset, not itself a control); ``INHERITED`` keys
    are the source's (whatever the control sets); ``INHERITED_DEFAULTS`` keys
    from the source unless the control sets them. A non-control dataset needs format and sources.
    """
    for name, spec in datasets.items():
        control = spec.get("control")
        if control is None:
            missing = [key for key in ("format", "sources") if key not in spec]
            if missing:
                raise ValueError(f"datasets.{name}: needs {' and '.join(missing)} (or a control: {{source: ...}} entry)")
            continue
        source = control["source"]
        if source not in datasets or source == name or datasets[source].get("control") is not None:
            raise ValueError(f"datasets.{name}.control.source: {source!r} is not another, non-control dataset of this config ({', '.join(datasets)})")
        # The schema fills defaults into every entry, so a control's own value cannot be told
        # from a default: the source's always wins (the schema says so).
        for key in INHERITED:
            if key in datasets[source]:
                spec[key] = datasets[source][key]
        for key in INHERITED_DEFAULTS:
            if key not in spec and key in datasets[source]:
                spec[key] = datasets[source][key]


def control_pairs(datasets: dict[str, dict]) -> dict[str, str]:
    """Aligned control -> its flipped partner: the flipped control whose models_from names it."""
    pairs = {}
    for name, spec in datasets.items():
        control = spec.get("control") or {}
        if control.get("version") != "flipped":
            continue
        aligned = spec.get("models_from")
        if aligned is None or (datasets[aligned].get("control") or {}).get("version") != "aligned":
            raise ValueError(
                f"datasets.{name}: a flipped control is scored by the models of its aligned control; set models_from to "
                f"that dataset (a control with the same source, marker, rates and seed and version: aligned)"
            )
        if aligned in pairs:
            raise ValueError(f"datasets.{name} and datasets.{pairs[aligned]} are both flipped versions of {aligned!r}; keep one")
        pairs[aligned] = name
    return pairs


def dataset_sources(name: str, spec: Mapping[str, Any], downloaded: Callable[[str], str]) -> dict[str, str]:
    """Each raw source of dataset ``name`` (its config entry ``spec``), by role: the configured path,
    or ``downloaded(role)`` where that path does not exist and ``spec["download"]`` names the role.

    Raises ValueError naming the config key of a path that neither exists nor has a download.
    """
    downloads = spec.get("download", {})
    found = {}
    for role, path in spec["sources"].items():
        if os.path.exists(path):
            found[role] = path
        elif role in downloads:
            found[role] = downloaded(role)
        else:
            raise ValueError(
                f"datasets.{name}.sources.{role}: {path!r} does not exist (relative paths are read from {os.getcwd()}). "
                f"Fix: correct the path, or add datasets.{name}.download.{role} with its url and sha256"
            )
    return found


def check_test_queries_unseen(splits: pd.DataFrame, model_splits: pd.DataFrame, models_from: str) -> None:
    """Raise if a test query of ``splits`` is a training query of ``model_splits``.

    A dataset with ``models_from`` re-ranks with models trained on that other dataset's
    training queries; a test query among them would be scored by a model that saw its
    judgements. Both frames: (query_id, split, position).
    """
    test = set(splits.query_id[splits.split == "test"])
    seen = sorted(test & set(model_splits.query_id[model_splits.split == "train"]))
    if seen:
        raise ValueError(
            f"{len(seen)} test query(ies) of this dataset, e.g. {seen[0]!r}, are training queries of dataset {models_from!r}, "
            f"whose models it re-uses (models_from); give both datasets the same queries, qrels and relevance_threshold"
        )


# Keys a dataset must share with the dataset whose models it re-uses (models_from): the
# ingested queries and qrels, hence the split, must be the same; and the query-likelihood
# template, the prompt qlm_sft was trained on (compared with its default filled in).
SHARED_WITH_MODELS = ("format", "sources", "options", "relevance_threshold", "qlm_template")


def qlm_template(spec: dict) -> str:
    """A dataset's query-likelihood template: ``qlm_template``, else the scorer's default."""
    return spec.get("qlm_template", DEFAULT_QLM_TEMPLATE)


def check_models_from(datasets: dict[str, dict]) -> None:
    """Raise unless every dataset's ``models_from`` names another dataset with the same data.

    ``datasets``: the config's ``datasets`` mapping (name -> spec). The named dataset must
    exist, train its own models (no chain) and agree on ``SHARED_WITH_MODELS`` and on its
    ``control`` entry except the version (an aligned/flipped control pair); the error names
    the config key and the fix.
    """
    for name, spec in datasets.items():
        other = spec.get("models_from")
        if other is None:
            continue
        key = f"datasets.{name}.models_from"
        if other not in datasets or other == name:
            raise ValueError(f"{key}: {other!r} is not another dataset of this config ({', '.join(datasets)}); name one of them or remove the key")
        if datasets[other].get("models_from") is not None:
            raise ValueError(f"{key}: {other!r} itself re-uses the models of {datasets[other]['models_from']!r}; name that dataset instead")
        # A control pair (aligned, flipped) shares its models: everything but the version agrees.
        mine_control, their_control = ({k: v for k, v in (s.get("control") or {}).items() if k != "version"} for s in (spec, datasets[other]))
        if mine_control != their_control:
            raise ValueError(
                f"{key}: datasets.{name}.control ({spec.get('control')!r}) and datasets.{other}.control "
                f"({datasets[other].get('control')!r}) must differ at most in version (the same marker in the same training "
                f"documents); make them equal, or remove models_from"
            )
        for field in SHARED_WITH_MODELS:
            value = qlm_template if field == "qlm_template" else (lambda s, f=field: s.get(f))
            mine, theirs = value(spec), value(datasets[other])
            if mine != theirs:
                raise ValueError(
                    f"{key}: {name!r} re-ranks with the models trained on {other!r}, but datasets.{name}.{field} ({mine!r}) differs "
                    f"from datasets.{other}.{field} ({theirs!r}); make them equal, or remove models_from to train on {name!r} itself"
                )

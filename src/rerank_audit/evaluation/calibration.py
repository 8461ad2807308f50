"""Calibration: do a method's scores mean the same across queries, and does it push them to the extremes?

Read from the runs alone (no new scoring). The pairs are the judged documents of each test
query's re-ranked head (``rerank.judged_head``; unjudged documents are left out), pooled over
the queries, per method and budget (BM25 included, on the same heads):

- **AUC**: how well the method's scores, pooled over queries, separate relevant from
  non-relevant documents (``auc.roc_auc``: Mann–Whitney, ties ½). A ranker needs only the
  order within a query; a score that also separates across queries is one a threshold can
  use. CI: percentile bootstrap over the queries (clusters), each with all its pairs
  (``auc.query_resample_weights``).
- **Extremes**: the bimodality coefficient of the method's standardised scores,
  BC = (skewness² + 1) / kurtosis (population moments; Pfister et al. 2013, Front. Psychol.
  4:700). It lies in (0, 1]: 1 when the scores take two values only, 1/3 for a normal
  distribution, 5/9 for a uniform one. Above 5/9 (``EXTREMES_BIMODALITY``) the scores pile up
  at the ends rather than around the middle: the method *pushes its scores to the extremes*.
  It is scale-free, so methods with scores in log-odds, log-likelihoods or rewards compare;
  a strongly skewed distribution (a long tail on one side) exceeds 5/9 too, which the figure
  tells apart.
- **Figure**: one panel per method and budget, the histograms of its standardised scores
  (z: minus the mean, over the SD of its pooled pairs) for relevant and non-relevant
  documents, so that panels compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.auc import interval_cell, query_resample_weights, resampled_auc, roc_auc
from rerank_audit.evaluation.plots import _save
from rerank_audit.evaluation.summary import MISSING, _join, budget_label, method_order
from rerank_audit.methods import display_name
from rerank_audit.rerank import judged_head

EXTREMES_BIMODALITY = 5 / 9  # a uniform distribution's bimodality coefficient
# The two classes look the same in every panel (each panel is titled with its method).
CLASS_STYLES = {True: {"color": "tab:blue", "histtype": "stepfilled", "alpha": 0.45}, False: {"color": "tab:red", "histtype": "step"}}
COLUMNS = [
    "dataset", "budget", "method", "queries", "pairs", "relevant_pairs", "auc", "auc_ci_low", "auc_ci_high",
    "ci_level", "resamples", "bimodality", "extremes", "note",
]  # fmt: skip


def standardised_heads(runs: Sequence[pd.DataFrame], qrels: pd.DataFrame, query_ids: Sequence[str], depth: int, relevance_threshold: int) -> pd.DataFrame:
    """The judged head documents of ``query_ids`` in each run, with ``z``: the score standardised per method and budget.

    ``runs``: RUN tables (the BM25 run and the re-ranked ones); the head is each query's top
    ``depth``. z = (score − mean) / SD (population SD) over the method's pooled pairs; 0 when
    its scores are all equal. Returns method, budget, query_id, doc_id, score, relevant, z.
    """
    pairs = pd.concat(
        [judged_head(run[run.query_id.isin(query_ids)], qrels, depth, relevance_threshold) for run in runs], ignore_index=True
    )[["method", "budget", "query_id", "doc_id", "score", "relevant"]]
    grouped = pairs.groupby(["method", "budget"], sort=False).score
    mean, sd = grouped.transform("mean"), grouped.transform("std", ddof=0)
    pairs["z"] = np.divide((pairs.score - mean).to_numpy(), sd.to_numpy(), out=np.zeros(len(pairs)), where=sd.to_numpy() > 0)
    return pairs


def bimodality_coefficient(values) -> float:
    """(skewness² + 1) / kurtosis of ``values`` (population moments, kurtosis not in excess); NaN when they are all equal."""
    values = np.asarray(values, dtype=np.float64)
    sd = values.std()
    if len(values) == 0 or sd == 0:
        return float("nan")
    z = (values - values.mean()) / sd
    return float((np.mean(z**3) ** 2 + 1) / np.mean(z**4))


def calibration_table(pairs: pd.DataFrame, dataset: str, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per method and budget of ``pairs`` (``standardised_heads``): the pooled AUC with its query-bootstrap CI and the bimodality (columns ``COLUMNS``).

    ``extremes``: bimodality > ``EXTREMES_BIMODALITY``. The CI is the percentile interval of
    ``n_resamples`` resamples of the queries (``numpy.random.default_rng(seed)``); resamples
    that drew one class only are left out of it and counted in ``note``; a method whose pairs
    hold one class only gets NaN and a note.
    """
    rng = np.random.default_rng(seed)
    quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
    rows = []
    for (method, budget), group in pairs.groupby(["method", "budget"], sort=False):
        labels, scores = group.relevant.to_numpy(dtype=bool), group.score.to_numpy(dtype=np.float64)
        bimodality = bimodality_coefficient(scores)
        row = {"dataset": dataset, "budget": budget, "method": method, "queries": group.query_id.nunique(), "pairs": len(group),
               "relevant_pairs": int(labels.sum()), "auc": roc_auc(scores, labels), "auc_ci_low": np.nan, "auc_ci_high": np.nan,
               "ci_level": confidence, "resamples": n_resamples, "bimodality": bimodality,
               "extremes": bool(bimodality > EXTREMES_BIMODALITY), "note": ""}  # fmt: skip
        if np.isnan(row["auc"]):
            row["note"] = f"no AUC: all {len(group)} judged head documents are {'relevant' if labels.any() else 'not relevant'}"
        else:
            resampled = resampled_auc(scores, labels, query_resample_weights(group.query_id, n_resamples, rng))
            row["auc_ci_low"], row["auc_ci_high"] = np.nanquantile(resampled, quantiles)
            one_class = int(np.isnan(resampled).sum())
            if one_class:
                row["note"] = f"{one_class} of {n_resamples} resamples drew one class only and were left out of the CI"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS).astype(
        {"queries": "int64", "pairs": "int64", "relevant_pairs": "int64", "resamples": "int64", "extremes": "bool",
         **{c: "float64" for c in ("auc", "auc_ci_low", "auc_ci_high", "ci_level", "bimodality")}}
    )  # fmt: skip


def _panels(table: pd.DataFrame, methods: Sequence[str] | None) -> list[tuple[str, str]]:
    """(method, budget) in table order: methods as ``method_order``, budget "0" first."""
    order = method_order(list(table.method), methods)
    keys = list(zip(table.method, table.budget))
    return sorted(keys, key=lambda key: (order.index(key[0]), key[1] != UNTRAINED_BUDGET, keys.index(key)))


def _panel_title(method: str, budget: str) -> str:
    return display_name(method) if budget == UNTRAINED_BUDGET else f"{display_name(method)} (budget {budget})"


def calibration_figure(pairs: pd.DataFrame, table: pd.DataFrame, path: str | Path, methods: Sequence[str] | None = None) -> Figure:
    """One panel per method and budget: histograms of its standardised scores (z) for relevant and non-relevant documents.

    ``pairs``: ``standardised_heads``; ``table``: ``calibration_table`` of the same pairs (each
    panel's title gives its AUC and bimodality). Shared bins from the smallest to the largest
    z; densities, so classes of different sizes compare. Returns the Figure, written as PNG to ``path``.
    """
    panels = _panels(table, methods)
    if not panels:  # still a figure, as the report declares it
        figure = Figure(figsize=(5, 1.5))
        figure.text(0.5, 0.5, "No test query's re-ranked head holds a judged document.", ha="center", va="center")
        return _save(figure, path)
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    bins = np.linspace(min(pairs.z.min(), -1.0), max(pairs.z.max(), 1.0), 31)
    stats = table.set_index(["method", "budget"])
    for ax, (method, budget) in zip(axes.flat, panels):
        group = pairs[(pairs.method == method) & (pairs.budget == budget)]
        for relevant, style in CLASS_STYLES.items():
            z = group.z[group.relevant == relevant]
            if len(z):
                ax.hist(z, bins=bins, density=True, linewidth=1.2, label=f"{'relevant' if relevant else 'not relevant'} ({len(z)})", **style)
        row = stats.loc[(method, budget)]
        auc = interval_cell(row, "auc")
        ax.set_title(f"{_panel_title(method, budget)}\nAUC {auc}, BC {row.bimodality:.2f}", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        figure.delaxes(ax)
    for ax in axes[-1]:
        ax.set_xlabel("score, standardised (z)")
    figure.suptitle("Scores of the test queries' judged head documents, per method (pooled over queries)")
    return _save(figure, path)


def calibration_findings(table: pd.DataFrame, methods: Sequence[str] | None = None) -> list[str]:
    """Which methods push their scores to the extremes, and whose scores separate relevant from non-relevant across queries."""
    rows = table.set_index(["method", "budget"])

    def names(selected: pd.Series) -> str:
        shown = [_panel_title(*key) for key in _panels(table, methods) if selected[key]]
        return _join(shown) if shown else "none"

    measured = rows.bimodality.notna()
    return [
        f"Pushing their scores to the extremes (bimodality coefficient above 5/9, a uniform distribution's): "
        f"{names(rows.extremes & measured)}; not: {names(~rows.extremes & measured)}.",
        f"Scores that separate relevant from non-relevant documents across queries (AUC CI above 0.5): {names(rows.auc_ci_low > 0.5)}.",
    ]


def calibration_markdown(table: pd.DataFrame, dataset: str, methods: Sequence[str] | None = None,
                         budget_sizes: Mapping[str, int] | None = None, digits: int = 2) -> str:
    """calibration.md of ``dataset``: one row per method and budget (``calibration_table`` rows), a legend and the findings."""
    lines = [f"# Calibration: {dataset}", ""]
    if table.empty:
        return "\n".join(lines + ["No test query's re-ranked head holds a judged document.", ""])
    lines += ["| method | budget | queries | pairs (relevant) | AUC | bimodality | extremes |", "|---|---|---:|---:|:---:|---:|:---:|"]
    notes = []
    for method, budget in _panels(table, methods):
        row = table[(table.method == method) & (table.budget == budget)].iloc[0]
        auc = interval_cell(row, "auc", digits)
        bimodality = MISSING if np.isnan(row.bimodality) else f"{row.bimodality:.{digits}f}"
        lines.append(f"| {display_name(method)} | {budget_label(budget, budget_sizes)} | {row.queries} | {row.pairs} ({row.relevant_pairs}) | "
                     f"{auc} | {bimodality} | {'yes' if row.extremes else 'no'} |")  # fmt: skip
        if row.note:
            notes.append(f"{display_name(method)} ({budget_label(budget, budget_sizes)}): {row.note}.")
    level, resamples = float(table.ci_level.iloc[0]), int(table.resamples.iloc[0])
    lines += [
        "",
        "> Pairs: the judged documents of each test query's re-ranked head (unjudged ones left out), pooled over the queries. "
        "AUC: how well the method's scores separate relevant from non-relevant documents *across* queries (0.5: chance; "
        "ties ½), which a ranking needs only within a query and a threshold needs across them "
        f"[{level:.0%} percentile bootstrap CI, {resamples} resamples of the queries, each with all its pairs]. "
        "Bimodality: (skewness² + 1) / kurtosis of the method's scores (1: two values only; normal 1/3; uniform 5/9); "
        "*extremes*: above 5/9, the scores pile up at the ends rather than in the middle (a long one-sided tail also "
        "exceeds it: calibration.png shows which). Figure: calibration.png, the standardised scores per method.",
        "",
        *([f"{MISSING}: {' '.join(notes)}", ""] if notes else []),
        "**Findings.** " + " ".join(calibration_findings(table, methods)),
        "",
    ]
    return "\n".join(lines)

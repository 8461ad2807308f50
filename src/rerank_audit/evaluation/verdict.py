"""Does the rationale writer's verdict predict the method's decision? The AUC of its log-odds,
with and without the explanation (leakage-adjusted simulatability, Hase et al. 2020).

Per method and budget: the AUC of ``verdict_log_odds`` (the writer's log-odds of "relevant"
after the query, the document, the keywords with their attributions and its own rationale)
against the method's decision (``relevant``: the upper half of its re-ranked head), the same
for ``verdict_log_odds_input_only`` (the writer asked about the query and the document
alone), and their difference: what the explanation adds to what the input already tells.

Confidence intervals: percentile bootstrap over the explained *queries* (clusters): a query
contributes a top and a bottom pair, which share the query and are not independent draws. A
resample draws queries with replacement and keeps all their pairs; both AUCs and their
difference are computed on the same resamples (a paired bootstrap).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rerank_audit.evaluation.auc import interval_cell, query_resample_weights, resampled_auc, roc_auc

WITH, INPUT_ONLY = "verdict_log_odds", "verdict_log_odds_input_only"
COLUMNS = [
    "dataset", "budget", "method", "queries", "pairs", "relevant_pairs", "auc", "auc_ci_low", "auc_ci_high",
    "auc_input_only", "auc_input_only_ci_low", "auc_input_only_ci_high", "added", "added_ci_low", "added_ci_high",
    "ci_level", "resamples", "note",
]  # fmt: skip


def verdict_auc(
    pairs: pd.DataFrame, dataset: str, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """The verdict AUCs per method and budget, with query-bootstrap CIs (columns ``COLUMNS``).

    ``pairs``: RATIONALE_METRICS rows (method, budget, query_id, relevant, ``WITH``,
    ``INPUT_ONLY``); pairs without both log-odds (tables written before they existed) are left
    out. ``auc`` / ``auc_input_only`` with and without the explanation, ``added`` = auc −
    auc_input_only; each CI the percentile interval of ``n_resamples`` resamples of the
    queries (``numpy.random.default_rng(seed)``, the same resamples for all three). A method
    whose explained pairs hold one class only gets NaN and a ``note`` that says so.
    """
    rows = []
    pairs = pairs.dropna(subset=[WITH, INPUT_ONLY])
    rng = np.random.default_rng(seed)
    quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
    for (budget, method), group in pairs.groupby(["budget", "method"], sort=False):
        labels = group.relevant.to_numpy(dtype=bool)
        row = {"dataset": dataset, "budget": budget, "method": method, "queries": group.query_id.nunique(), "pairs": len(group),
               "relevant_pairs": int(labels.sum()), "ci_level": confidence, "resamples": n_resamples, "note": ""}  # fmt: skip
        if labels.all() or not labels.any():
            row["note"] = f"no AUC: all {len(group)} explained pairs are {'relevant' if labels.any() else 'not relevant'} by the method's decision"
            rows.append(row)
            continue
        weights = query_resample_weights(group.query_id, n_resamples, rng)
        resampled = {}
        for name, column in (("auc", WITH), ("auc_input_only", INPUT_ONLY)):
            scores = group[column].to_numpy(dtype=np.float64)
            row[name] = roc_auc(scores, labels)
            resampled[name] = resampled_auc(scores, labels, weights)
        row["added"] = row["auc"] - row["auc_input_only"]
        resampled["added"] = resampled["auc"] - resampled["auc_input_only"]
        for name, values in resampled.items():
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = np.nanquantile(values, quantiles)
        one_class = int(np.isnan(resampled["auc"]).sum())
        if one_class:
            row["note"] = f"{one_class} of {n_resamples} resamples drew one class only and were left out of the CIs"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS).astype({c: "float64" for c in COLUMNS if c.startswith(("auc", "added"))})


def verdict_markdown(table: pd.DataFrame, dataset: str, methods: Sequence[str] | None = None,
                     budget_sizes: Mapping[str, int] | None = None, digits: int = 2) -> str:
    """verdict_auc.md of ``dataset``: one row per method and budget (``verdict_auc`` rows), a legend and the findings."""
    from rerank_audit.evaluation.summary import MISSING, budget_label, method_order, verdict_auc_findings
    from rerank_audit.methods import display_name

    table = table[table.dataset == dataset]
    lines = [f"# Verdict AUC: {dataset}", ""]
    if table.empty:
        return "\n".join(lines + ["No explained pair has the writer's log-odds (rationales written before they were read).", ""])

    lines += ["| method | budget | queries | pairs (relevant) | AUC with explanation | AUC input only | added by the explanation |",
              "|---|---|---:|---:|:---:|:---:|:---:|"]  # fmt: skip
    order = method_order(list(table.method), methods)
    notes = []
    for budget in dict.fromkeys(table.budget):
        rows = table[table.budget == budget].set_index("method")
        for method in [m for m in order if m in rows.index]:
            row = rows.loc[method]
            lines.append(
                f"| {display_name(method)} | {budget_label(budget, budget_sizes)} | {row.queries} | {row.pairs} ({row.relevant_pairs}) | "
                f"{interval_cell(row, 'auc', digits)} | {interval_cell(row, 'auc_input_only', digits)} | {interval_cell(row, 'added', digits, '+')} |"
            )
            if row.note:
                notes.append(f"{display_name(method)} ({budget_label(budget, budget_sizes)}): {row.note}.")
    level, resamples = float(table.ci_level.iloc[0]), int(table.resamples.iloc[0])
    lines += [
        "",
        "> The writer's verdict read as a probability: after its rationale, the rationale writer's log-odds of \"yes\" to "
        "\"Is the document relevant to the search query?\" (every one-token case/space variant of yes against those of no, as "
        "the yes/no scorers read them). AUC: how well that log-odds separates the pairs the method ranked in the upper half "
        "of its re-ranked head from those in the lower half (0.5: no better than chance; ties count 1/2). *Input only*: the "
        "same question when the writer sees only the query and the document (no keywords, no attributions, no rationale). "
        "*Added*: the difference, what the explanation tells the writer about the method's decision beyond the input "
        "(leakage-adjusted simulatability, Hase et al. 2020). "
        f"[{level:.0%} percentile bootstrap CI, {resamples} resamples of the explained queries, each with all its pairs; "
        "the same resamples for both AUCs and their difference.]",
        "",
        *([f"{MISSING}: {' '.join(notes)}", ""] if notes else []),
        "**Findings.** " + " ".join(verdict_auc_findings(table, order)),
        "",
    ]
    return "\n".join(lines)

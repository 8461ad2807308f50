"""Do the methods that rank well explain well? One row per method, and a correlation across methods.

Per method (trained ones at their budget beside the untrained ones): its accuracy (the primary
ranking measure over the test queries), its attributions' simulatability (how well they predict
held-out word removals, ``faithfulness.simulatability``) and the writer's verdict AUC with the
explanation and what the explanation adds to the input alone (``verdict``), each with a
percentile bootstrap CI. Across methods: Spearman's ρ between accuracy and each explanation
measure, with

- a CI from the same bootstrap: a resample draws the test queries with replacement, *once for
  every method* (the methods rank and explain the same queries), recomputes every method's
  means and AUCs on it, and ρ across methods; so the CI says how much ρ moves with the queries
  drawn, for these methods;
- the permutation p over the methods (all n! orders of one measure against the other, the data's
  ties kept; Monte Carlo beyond 8 methods), which treats the methods as the units;
- the detectable ρ: the smallest |ρ| that same permutation test could call significant at α with n
  methods (none with 3 methods: the smallest p is 1/3), the effect a "no correlation" could have found.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.auc import interval_cell, query_resample_weights, resampled_auc, roc_auc
from rerank_audit.evaluation.rank_correlation import detectable_rho, permutation_null, permutation_p, spearman_rows
from rerank_audit.evaluation.statistics import TEST_SPLIT
from rerank_audit.evaluation.verdict import INPUT_ONLY, WITH

SIMULATABILITY = "simulatability"
EXPLANATION_MEASURES = {  # column: what the table calls it
    SIMULATABILITY: "attribution simulatability",
    "verdict_auc": "verdict AUC with the explanation",
    "verdict_added": "verdict AUC added by the explanation",
}
def _weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[resamples]: the mean of ``values`` [queries] (NaN: not measured) under each row of query ``weights``."""
    present = ~np.isnan(values)
    drawn = weights[:, present]
    with np.errstate(invalid="ignore", divide="ignore"):
        return drawn @ values[present] / drawn.sum(axis=1)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _budget_groups(explained: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(table budget, budgets in the table): each trained budget with the untrained methods beside it."""
    budgets = list(dict.fromkeys(explained.budget))
    trained = [b for b in budgets if b != UNTRAINED_BUDGET]
    return [(b, [b, UNTRAINED_BUDGET]) for b in trained] or [(UNTRAINED_BUDGET, [UNTRAINED_BUDGET])]


def accuracy_vs_explanation(
    per_query: pd.DataFrame,
    explained: pd.DataFrame,
    verdict_pairs: pd.DataFrame,
    accuracy: str,
    dataset: str,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profiles, correlations) of ``dataset``'s explained methods.

    ``per_query``: PER_QUERY_METRICS rows of the rankings (``accuracy`` of the test split is read); ``explained``:
    the explain stage's per-query rows (``statistics.explain_per_query``; ``simulatability`` is
    read, and its methods and budgets are the ones profiled); ``verdict_pairs``:
    RATIONALE_METRICS rows (relevant, ``verdict.WITH``, ``verdict.INPUT_ONLY``), may be empty.
    profiles: one row per table and method (``table_budget``: each trained budget, with the
    untrained methods in every table; ``budget``: the method's own): ``accuracy``, ``simulatability``, ``verdict_auc``,
    ``verdict_added`` (AUC with − AUC input only), each with ``<name>_ci_low`` / ``_ci_high``,
    ``explained_queries`` and ``verdict_pairs``. correlations: one row per table and explanation measure:
    ``methods``, ``rho``, ``rho_ci_low`` / ``_ci_high``, ``p``, ``detectable`` (module docstring),
    ``resamples_left_out`` (no ρ defined). The resamples come from ``numpy.random.default_rng(seed)``,
    the same for every measure, method and table.
    """
    profiles, correlations = [], []
    ranking = per_query[(per_query.dataset == dataset) & (per_query.split == TEST_SPLIT) & (per_query.measure == accuracy)].dropna(subset=["value"])
    simulated = explained[explained.measure == SIMULATABILITY]
    pairs = verdict_pairs.dropna(subset=[WITH, INPUT_ONLY]) if len(verdict_pairs) else verdict_pairs
    for table_budget, budgets in _budget_groups(simulated) if len(simulated) else []:
        members = simulated[simulated.budget.isin(budgets)][["method", "budget"]].drop_duplicates()
        methods, budget_of = list(members.method), dict(zip(members.method, members.budget))
        rows = ranking[ranking.budget.isin(budgets) & ranking.method.isin(methods)]
        queries = pd.Index(sorted(set(rows.query_id)))
        # One draw of the test queries for every method of the table, the same in every table (untrained rows repeat).
        weights = query_resample_weights(queries, n_resamples, np.random.default_rng(seed))
        observed: dict[str, dict[str, float]] = {name: {} for name in ["accuracy", *EXPLANATION_MEASURES]}
        resampled: dict[str, dict[str, np.ndarray]] = {name: {} for name in observed}
        for method in methods:
            row = {"dataset": dataset, "table_budget": table_budget, "budget": budget_of[method], "method": method, "accuracy_measure": accuracy}
            for name, frame in (("accuracy", rows), (SIMULATABILITY, simulated)):
                own = frame[(frame.method == method) & (frame.budget == budget_of[method])].set_index("query_id").value
                if name == SIMULATABILITY:
                    _check_ranked(own.index, queries, dataset, method, accuracy)
                    row["explained_queries"] = len(own)
                values = own.reindex(queries).to_numpy(dtype=np.float64)
                observed[name][method] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
                resampled[name][method] = _weighted_means(values, weights)
            own = pairs[(pairs.method == method) & (pairs.budget == budget_of[method])] if len(pairs) else pairs
            labels = own.relevant.to_numpy(dtype=bool) if len(own) else np.zeros(0, dtype=bool)
            row["verdict_pairs"] = len(own)
            if len(own) and labels.any() and not labels.all():
                _check_ranked(own.query_id, queries, dataset, method, accuracy)
                pair_weights = weights[:, queries.get_indexer(own.query_id)]
                with_, alone = own[WITH].to_numpy(np.float64), own[INPUT_ONLY].to_numpy(np.float64)
                observed["verdict_auc"][method] = roc_auc(with_, labels)
                observed["verdict_added"][method] = roc_auc(with_, labels) - roc_auc(alone, labels)
                resampled["verdict_auc"][method] = resampled_auc(with_, labels, pair_weights)
                resampled["verdict_added"][method] = resampled["verdict_auc"][method] - resampled_auc(alone, labels, pair_weights)
            for name in observed:
                row[name] = observed[name].get(method, float("nan"))
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = _interval(resampled[name].get(method, np.array([])), confidence)
            profiles.append(row)
        for name in EXPLANATION_MEASURES:
            both = [m for m in methods if np.isfinite(observed[name].get(m, np.nan)) and np.isfinite(observed["accuracy"][m])]
            row = {"dataset": dataset, "table_budget": table_budget, "accuracy_measure": accuracy, "measure": name, "methods": len(both)}
            if len(both) >= 3:
                x, y = np.array([observed["accuracy"][m] for m in both]), np.array([observed[name][m] for m in both])
                moved = spearman_rows(np.stack([resampled["accuracy"][m] for m in both], axis=1), np.stack([resampled[name][m] for m in both], axis=1))
                null = permutation_null(x, y, seed)
                rho = float(spearman_rows(x, y))
                row |= {"rho": rho, "p": permutation_p(rho, null), "detectable": detectable_rho(null, alpha)}
                # A resample that drew none of a method's explained queries (or one verdict class) has no ρ: counted, left out.
                row["resamples_left_out"] = int((~np.isfinite(moved)).sum())
                row["rho_ci_low"], row["rho_ci_high"] = _interval(moved, confidence)
            correlations.append(row)
    profile_columns = ["dataset", "table_budget", "budget", "method", "accuracy_measure", "explained_queries", "verdict_pairs"] + [
        f"{n}{s}" for n in ["accuracy", *EXPLANATION_MEASURES] for s in ("", "_ci_low", "_ci_high")
    ]
    correlation_columns = ["dataset", "table_budget", "accuracy_measure", "measure", "methods", "rho", "rho_ci_low", "rho_ci_high", "p", "detectable", "resamples_left_out"]  # fmt: skip
    profiles = pd.DataFrame(profiles).reindex(columns=profile_columns)
    correlations = pd.DataFrame(correlations).reindex(columns=correlation_columns)
    floats = {c: "float64" for c in [*profile_columns[7:], *correlation_columns[5:10]]}
    return (profiles.astype({c: t for c, t in floats.items() if c in profiles}).assign(ci_level=confidence, resamples=n_resamples),
            correlations.astype({c: t for c, t in floats.items() if c in correlations}).assign(ci_level=confidence, alpha=alpha))  # fmt: skip


def _check_ranked(query_ids, ranked: pd.Index, dataset: str, method: str, accuracy: str) -> None:
    missing = sorted(set(query_ids) - set(ranked))
    if missing:
        raise ValueError(f"{dataset}: {method} explains queries it has no {accuracy} for: {missing[:5]}")


def reading(correlations: pd.DataFrame) -> list[str]:
    """The plain answer per table: for each explanation measure, whether accuracy and it go together."""
    sentences = []
    for _, row in correlations.iterrows():
        what, level = EXPLANATION_MEASURES[row.measure], f"{row.ci_level:.0%}"
        if row.methods < 3:
            sentences.append(f"Accuracy against {what}: {int(row.methods)} methods, too few for a correlation.")
            continue
        if not np.isfinite(row.rho):
            sentences.append(f"Accuracy against {what}: one of the two is equal for all {int(row.methods)} methods, so ρ is undefined.")
            continue
        text = (
            f"Across {int(row.methods)} methods, Spearman's ρ between {row.accuracy_measure} and {what} is {row.rho:+.2f} "
            f"[{level} CI over resampled queries {row.rho_ci_low:+.2f}, {row.rho_ci_high:+.2f}], permutation p = {row.p:.2g}"
        )
        if not np.isfinite(row.detectable):
            text += f"; with {int(row.methods)} methods no ρ could be significant at α = {row.alpha:g}."
        elif row.p <= row.alpha:
            text += f": the methods that rank better {'explain better' if row.rho > 0 else 'explain worse'} by this measure."
        else:
            text += f": no significant correlation; with {int(row.methods)} methods only |ρ| ≥ {row.detectable:.2f} could have been significant at α = {row.alpha:g}"
            stable = row.rho_ci_low > 0 or row.rho_ci_high < 0
            text += " (the sign of ρ is stable over resampled queries, for these methods)." if stable else "."
        if row.resamples_left_out:
            text += f" ({int(row.resamples_left_out)} resamples without a defined ρ left out of its CI.)"
        sentences.append(text)
    return sentences


def accuracy_vs_explanation_markdown(
    profiles: pd.DataFrame, correlations: pd.DataFrame, dataset: str, methods: Sequence[str] | None = None,
    budget_sizes: Mapping[str, int] | None = None, digits: int = 2,
) -> str:
    """accuracy_vs_explanation.md: one table per trained budget (the untrained methods in each), its reading and a legend."""
    from rerank_audit.evaluation.summary import budget_label, method_order
    from rerank_audit.methods import display_name

    lines = [f"# Do the methods that rank well explain well? {dataset}", ""]
    if profiles.empty:
        return "\n".join(lines + ["No method was explained (explain.queries is 0 or no attributions).", ""])
    accuracy = profiles.accuracy_measure.iloc[0]
    for budget in dict.fromkeys(profiles.table_budget):
        rows = profiles[profiles.table_budget == budget].set_index("method")
        lines += [f"## {budget_label(budget, budget_sizes)}", "",
                  f"| method | {accuracy} | explained queries (verdict pairs) | " + " | ".join(EXPLANATION_MEASURES.values()) + " |",
                  "|---|:---:|---:|" + ":---:|" * len(EXPLANATION_MEASURES)]  # fmt: skip
        for method in method_order(list(rows.index), methods):
            row = rows.loc[method]
            untrained = " (untrained)" if row.budget == UNTRAINED_BUDGET and budget != UNTRAINED_BUDGET else ""
            cells = [interval_cell(row, "accuracy", 3), f"{row.explained_queries} ({row.verdict_pairs})"]
            cells += [interval_cell(row, n, digits, "+" if n == "verdict_added" else "") for n in EXPLANATION_MEASURES]
            lines.append(f"| {display_name(method)}{untrained} | " + " | ".join(cells) + " |")
        lines += ["", "**Reading.** " + " ".join(reading(correlations[correlations.table_budget == budget])), ""]
    level, resamples = float(profiles.ci_level.iloc[0]), int(profiles.resamples.iloc[0])
    lines += [
        f"> {accuracy}: mean over the test queries. Attribution simulatability: Spearman correlation, per explained pair, "
        "between the score changes of held-out word removals and the attributions' prediction of them (summary.md tests it "
        "against the same attributions permuted); mean over the explained queries. Verdict AUC: the rationale writer's "
        "log-odds of \"relevant\" against the method's decision (verdict_auc.md); *added*: minus the same AUC from the query "
        f"and the document alone. [{level:.0%} percentile bootstrap CIs, {resamples} resamples of all test queries, the "
        "same resamples for every method and measure (verdict_auc.md resamples the explained queries only, so its CIs "
        "differ slightly).] ρ: across the methods of the table; its CI from those resamples (how ρ moves with the queries "
        "drawn, for these methods); p: permutation test over the methods, the units here (every order up to 8 methods, "
        "ties kept); detectable: the smallest |ρ| that test could call significant. The untrained methods are the same "
        "rows in every table.",
        "",
    ]
    return "\n".join(lines)

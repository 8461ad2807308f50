"""Statistics and figures of the shortcut probes (``probe.responses`` tables).

Per dataset x budget x method x probe: the mean per-query delta (in candidate spreads) with a
bootstrap CI, a paired t-test of edited against original over the queries (delta against 0),
and Holm's correction over every probe x method of one dataset and budget (the family of
``statistics.compare_methods``: budget "0" holds BM25 and the untrained methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.plots import _save, measure_label, method_colours
from rerank_audit.evaluation.statistics import bootstrap_ci, holm, paired_t_test
from rerank_audit.evaluation.summary import method_order
from rerank_audit.methods import display_name
from rerank_audit.probe.registry import REGISTRY

PROBE_TEST_COLUMNS = [
    "dataset", "budget", "method", "probe", "queries", "mean", "ci_low", "ci_high", "ci_level",
    "t", "p", "p_holm", "alpha", "significant", "response", "overtake_before", "overtake_after",
]  # fmt: skip
# A random re-ordering ignores every edit: its stuffed document outranks a relevant one by chance.
RANDOM_OVERTAKE = 0.5


def probe_tests(
    per_query: pd.DataFrame, alpha: float = 0.05, n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (dataset, budget, method, probe) of ``per_query`` (``probe_responses`` rows with a dataset column).

    Queries with a NaN delta (no candidate spread) are left out. Columns
    ``PROBE_TEST_COLUMNS``: queries, mean delta, its percentile bootstrap CI (``confidence``
    = ci_level, ``n_resamples``, ``seed``), t and p of the two-sided paired t-test of edited
    against original (``statistics.paired_t_test`` of delta against 0), p_holm (Holm over
    the rows of one dataset and budget), alpha, significant (p_holm < alpha), response
    ("rises" / "falls": significant, by the sign of the mean; "none"; a control's marker
    flags a method whose score rises), and the mean overtake shares (probes with ``overtake``; NaN elsewhere). Ordered by dataset, budget ("0" first),
    method (``method_order``) and probe (registry order).
    """
    missing = {"dataset", "budget", "method", "probe", "query_id", "delta"} - set(per_query.columns)
    if missing:
        raise ValueError(f"probe table lacks columns {sorted(missing)}")
    table = per_query.dropna(subset=["delta"])
    rows = []
    for (dataset, budget, method, probe), group in table.groupby(["dataset", "budget", "method", "probe"], sort=False):
        delta = group.delta.to_numpy(dtype=np.float64)
        t, p = paired_t_test(delta, np.zeros_like(delta))
        low, high = bootstrap_ci(delta, n_resamples, confidence, seed)
        rows.append(
            {
                "dataset": dataset, "budget": budget, "method": method, "probe": probe, "queries": len(delta),
                "mean": float(delta.mean()), "ci_low": low, "ci_high": high, "ci_level": confidence, "t": t, "p": p, "alpha": alpha,
                "overtake_before": group.get("overtake_before", pd.Series(dtype=float)).mean(),
                "overtake_after": group.get("overtake_after", pd.Series(dtype=float)).mean(),
            }  # fmt: skip
        )
    return _holm_per_budget(pd.DataFrame(rows, columns=PROBE_TEST_COLUMNS), alpha, "response", "mean", ("rises", "falls"))


REFERENCE_COLUMNS = [
    "dataset", "budget", "method", "reference", "probe", "queries", "difference", "ci_low", "ci_high", "ci_level",
    "t", "p", "p_holm", "alpha", "significant", "direction",
]  # fmt: skip


def compare_with_reference(
    per_query: pd.DataFrame, reference: str = "bm25", alpha: float = 0.05, n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Does a method respond to a probe more than the ``reference`` (BM25, budget "0") does? One row per (dataset, budget, method, probe).

    ``per_query``: as ``probe_tests``. Per query, the method's delta minus the reference's delta on
    the same probe and query (both in their own candidate spreads; inner join on query_id,
    NaN left out): ``difference`` is its mean with a percentile bootstrap CI, t and p the
    two-sided paired t-test (``statistics.paired_t_test``), p_holm Holm's correction over every
    method x probe of one dataset and budget, significant p_holm < alpha, direction "more" /
    "less" (significant, by the sign of the difference) or "none". Rows of the reference and of
    probes the reference lacks are left out. Ordered as ``probe_tests``.
    """
    table = per_query.dropna(subset=["delta"])
    ref = table[(table.method == reference) & (table.budget == UNTRAINED_BUDGET)]
    rows = []
    for (dataset, budget, method, probe), group in table[table.method != reference].groupby(["dataset", "budget", "method", "probe"], sort=False):
        base = ref[(ref.dataset == dataset) & (ref.probe == probe)].set_index("query_id").delta
        if base.empty:
            continue
        own = group.set_index("query_id").delta
        both = own.index.intersection(base.index)
        difference = (own[both] - base[both]).to_numpy(dtype=np.float64)
        t, p = paired_t_test(own[both].to_numpy(dtype=np.float64), base[both].to_numpy(dtype=np.float64))
        low, high = bootstrap_ci(difference, n_resamples, confidence, seed)
        rows.append(
            {
                "dataset": dataset, "budget": budget, "method": method, "reference": reference, "probe": probe, "queries": len(both),
                "difference": float(difference.mean()) if len(both) else np.nan, "ci_low": low, "ci_high": high, "ci_level": confidence,
                "t": t, "p": p, "alpha": alpha,
            }  # fmt: skip
        )
    return _holm_per_budget(pd.DataFrame(rows, columns=REFERENCE_COLUMNS), alpha, "direction", "difference", ("more", "less"))


def _holm_per_budget(result: pd.DataFrame, alpha: float, column: str, value: str, words: tuple[str, str]) -> pd.DataFrame:
    """``result`` with p_holm (Holm over each dataset and budget), significant and ``column``:
    ``words`` (above 0, below 0) by the sign of ``value`` where significant, else "none"."""
    if result.empty:
        return result
    result["p_holm"] = result.groupby(["dataset", "budget"], sort=False).p.transform(lambda p: holm(p.to_numpy()))
    result["significant"] = result.p_holm < alpha
    result[column] = np.where(result.significant, np.where(result[value] > 0, *words), "none")
    return _in_table_order(result)


def _budget_order(budgets: pd.Series) -> list[str]:
    """The distinct budgets, "0" (untrained) first, then as they come (config order)."""
    return sorted(dict.fromkeys(budgets), key=lambda b: b != UNTRAINED_BUDGET)


def _colours(present: Sequence[str], methods: Sequence[str] | None) -> dict[str, tuple]:
    """``plots.method_colours`` as the report's figures, where random order and BM25 are always present, assign them."""
    return method_colours(method_order(["random", "bm25", *present], methods))


def _row_label(method: str, budget: str) -> str:
    return display_name(method) if budget == UNTRAINED_BUDGET else f"{display_name(method)} {budget}"


def probe_figure(tests: pd.DataFrame, path: str | Path, methods: Sequence[str] | None = None) -> Figure:
    """Methods x probes: each method's mean delta (in candidate spreads) with its CI, per probe.

    ``tests``: ``probe_tests`` output. One row of panels per dataset, one panel per probe;
    within a panel one line per (method, budget) (``method_order``, ``methods`` = config
    order), a point at the mean, a bar over the CI, "*" beside the Holm-significant ones, a
    line at 0 (no response). Returns the Figure, written as PNG to ``path``.
    """
    if tests.empty:
        raise ValueError("no probe results to draw")
    datasets = list(dict.fromkeys(tests.dataset))
    probes = [p for p in REGISTRY if p in set(tests.probe)]
    rows = tests[["method", "budget"]].drop_duplicates()
    order = method_order(list(rows.method), methods)
    rows = rows.assign(_m=rows.method.map(order.index), _b=rows.budget.map(_budget_order(rows.budget).index)).sort_values(["_m", "_b"])
    lines = [(m, b) for m, b in zip(rows.method, rows.budget)]
    colours = _colours(list(rows.method), methods)
    figure = Figure(figsize=(2.9 * len(probes) + 1.5, 0.38 * len(lines) * len(datasets) + 1.6 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), len(probes), squeeze=False, sharey="row")
    level = f"{float(tests.ci_level.iloc[0]):.0%}"
    for r, dataset in enumerate(datasets):
        for c, probe in enumerate(probes):
            ax = axes[r, c]
            data = tests[(tests.dataset == dataset) & (tests.probe == probe)].set_index(["method", "budget"])
            for y, (method, budget) in enumerate(lines):
                if (method, budget) not in data.index:
                    continue
                row = data.loc[(method, budget)]
                colour = colours[method]
                ax.errorbar(row["mean"], y, xerr=[[row["mean"] - row.ci_low], [row.ci_high - row["mean"]]], fmt="o", color=colour, capsize=2, markersize=5)
                if bool(row.significant):
                    ax.annotate("*", (row.ci_high, y), xytext=(3, -4), textcoords="offset points", fontsize=12, weight="bold", color=colour)
            ax.axvline(0, color="0.5", linewidth=0.8)
            ax.set_yticks(range(len(lines)), [_row_label(m, b) for m, b in lines])
            ax.set_ylim(len(lines) - 0.5, -0.5)
            reading = REGISTRY[probe].reading
            ax.set_title(f"{dataset}: {probe}\n({reading})" if len(datasets) > 1 else f"{probe}\n({reading})", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            if r == len(datasets) - 1:
                ax.set_xlabel("Δ score, in SDs of the\nmethod's candidate scores")
    figure.suptitle(f"Shortcut probes: mean Δ per query ({level} bootstrap CI; * Holm p < {float(tests.alpha.iloc[0]):g})")
    return _save(figure, path)


def accuracy_vs_shortcut(
    stats: pd.DataFrame, tests: pd.DataFrame, path: str | Path, accuracy: str = "nDCG@10", methods: Sequence[str] | None = None
) -> Figure:
    """One point per method x budget: x = its stuffing overtake rate, y = its mean ``accuracy``.

    ``stats``: ``statistics.compare_methods`` output (the accuracy means, random order and
    BM25 included); ``tests``: ``probe_tests`` output (overtake_after of the stuffing rows;
    the rate before stuffing is drawn as a hollow point joined to it). BM25 is drawn as a
    black square; random order, which ignores every edit, at the chance rate 0.5. One panel
    per dataset. Returns the Figure, written as PNG to ``path``.
    """
    stuffing = tests[tests.probe == "stuffing"][["dataset", "method", "budget", "overtake_before", "overtake_after"]]
    points = stats[stats.measure == accuracy][["dataset", "method", "budget", "mean"]].merge(stuffing, on=["dataset", "method", "budget"], how="left")
    if points.overtake_after.isna().all() and not (points.method == "random").any():
        raise ValueError(f"no method has both {accuracy} and a stuffing overtake rate")
    datasets = list(dict.fromkeys(points.dataset))
    colours = _colours(list(points.method), methods)
    figure = Figure(figsize=(9.0 * len(datasets), 5.0), layout="constrained")
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        data = points[points.dataset == dataset]
        for method in method_order(list(data.method), methods):
            for row in data[data.method == method].itertuples():
                x = RANDOM_OVERTAKE if method == "random" else row.overtake_after
                if np.isnan(x):
                    continue
                style = {"bm25": {"marker": "s", "s": 70}, "random": {"marker": "D", "s": 55}}.get(method, {"marker": "o", "s": 55})
                label = "random order (chance)" if method == "random" else _row_label(method, row.budget)
                ax.scatter(x, row.mean, color=colours.get(method, "0.6"), edgecolors="white", zorder=3, label=label, **style)
                if method != "random" and not np.isnan(row.overtake_before):
                    ax.scatter(row.overtake_before, row.mean, facecolors="none", edgecolors=colours[method], s=40, zorder=2)
                    ax.plot([row.overtake_before, x], [row.mean, row.mean], color=colours[method], alpha=0.4, linewidth=1)
        # A legend, not labels at the points: methods of similar accuracy and overtake rate sit on top of each other.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.axvline(RANDOM_OVERTAKE, color="0.6", linestyle=":", linewidth=1)
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel("stuffing overtake rate: mean over queries of the share of (relevant, stuffed\nnot-relevant) pairs where the stuffed document scores higher (hollow: before stuffing)")
        ax.set_ylabel(measure_label(accuracy))
        ax.set_title(f"{dataset}: ranking accuracy vs. response to query-word stuffing")
        ax.grid(alpha=0.3)
    return _save(figure, path)


def _in_table_order(result: pd.DataFrame) -> pd.DataFrame:
    """Rows by dataset (first seen), budget ("0" first), method (table order), probe (registry order)."""
    positions = pd.DataFrame(
        {
            "dataset": result.dataset.map(list(dict.fromkeys(result.dataset)).index),
            "budget": result.budget.map(_budget_order(result.budget).index),
            "method": result.method.map(method_order(list(result.method)).index),
            "probe": result.probe.map(list(REGISTRY).index),
        }
    )
    result = result.loc[positions.sort_values(list(positions.columns), kind="stable").index]
    return result.astype({"queries": "int64"}).reset_index(drop=True)


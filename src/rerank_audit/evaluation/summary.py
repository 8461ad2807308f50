"""summary.md: one table of methods x (ranking, explainability) per dataset and budget, with findings.

Every number and every sentence is generated from the statistics (``compare_methods``) and
the per-query explainability table (``explain_per_query``); nothing is typed by hand.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.statistics import BASELINES, compare_with_random

RANKING_MEASURES = ("nDCG@10", "RR@10", "AP")
PRIMARY_MEASURE = "nDCG@10"
MISSING = "–"
BETTER, WORSE = "▲", "▼"
FAITHFUL, UNFAITHFUL = "◆", "◇"
METHOD_NAMES = {"bm25": "BM25", "zeroshot": "zero-shot"}

# Explainability columns: (header, measure, random-baseline measure or None); "{k}" is the K.
EXPLAIN_COLUMNS = [
    ("compr.@{k} vs random (↑)", "comprehensiveness@{k}", "comprehensiveness_random@{k}"),
    ("suff.@{k} vs random (↓)", "sufficiency@{k}", "sufficiency_random@{k}"),
    ("lexical shortcut", "lexical_shortcut", None),
    ("keyword coverage (↑)", "keyword_coverage", None),
    ("verdict agreement (↑)", "verdict_agreement", None),
    ("unsupported words (↓)", "unsupported_rate", None),
]


def _name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _names(methods: Sequence[str]) -> str:
    names = [_name(m) for m in methods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def budget_label(budget: str, budget_sizes: Mapping[str, int] | None = None) -> str:
    """"no training" for budget "0"; otherwise the budget with its number of training queries."""
    if budget == UNTRAINED_BUDGET:
        return "no training (budget 0)"
    size = (budget_sizes or {}).get(budget)
    if size is not None and str(size) != budget:
        return f"budget {budget} ({size} training queries)"
    return f"budget {budget} training queries" if budget.isdigit() else f"budget {budget}"


def method_order(present: Sequence[str], methods: Sequence[str] | None = None) -> list[str]:
    """bm25, zeroshot, then the trained methods in config order (``methods``), then any others."""
    first = list(BASELINES) + [m for m in (methods or []) if m not in BASELINES]
    present = list(dict.fromkeys(present))
    return [m for m in first if m in present] + [m for m in present if m not in first]


def table_budgets(stats: pd.DataFrame) -> list[str]:
    """The budgets that get a table: every trained budget, or "0" when nothing was trained."""
    trained = [b for b in dict.fromkeys(stats.budget) if b != UNTRAINED_BUDGET]
    return trained or [UNTRAINED_BUDGET]


def _rows_for(frame: pd.DataFrame, dataset: str, budget: str) -> pd.DataFrame:
    """Rows of one table: the baselines (budget "0") and the methods trained at ``budget``."""
    return frame[(frame.dataset == dataset) & ((frame.budget == budget) | (frame.budget == UNTRAINED_BUDGET))]


def _infer_k(measures: Sequence[str]) -> int | None:
    ks = sorted({int(m.group(1)) for m in (re.match(r"^comprehensiveness@(\d+)$", x) for x in measures) if m})
    return ks[0] if ks else None


def _ranking_cell(row: pd.Series | None, digits: int) -> str:
    if row is None:
        return MISSING
    mark = ""
    if "bm25_significant" in row and _is_true(row["bm25_significant"]):
        mark = BETTER if row["bm25_diff"] > 0 else WORSE
    return f"{row['mean']:.{digits}f} [{row.ci_low:.{digits}f}, {row.ci_high:.{digits}f}]{mark}"


def _lookup(frame: pd.DataFrame, method: str, measure: str) -> pd.Series | None:
    hit = frame[(frame.method == method) & (frame.measure == measure)]
    return None if hit.empty else hit.iloc[0]


def _explain_means(explain: pd.DataFrame | None, stats: pd.DataFrame) -> pd.DataFrame:
    """(dataset, budget, method, measure, mean) of explainability measures: from ``explain`` if given, else ``stats``."""
    if explain is not None and len(explain):
        test = explain[explain.split == "test"].dropna(subset=["value"])
        return test.groupby(["dataset", "budget", "method", "measure"], sort=False).value.mean().rename("mean").reset_index()
    return stats[["dataset", "budget", "method", "measure", "mean"]]


def summary_markdown(
    stats: pd.DataFrame,
    explain: pd.DataFrame | None = None,
    *,
    methods: Sequence[str] | None = None,
    ranking_measures: Sequence[str] = RANKING_MEASURES,
    k: int | None = None,
    budget_sizes: Mapping[str, int] | None = None,
    digits: int = 3,
) -> str:
    """The report's summary.md: per dataset and budget a table, its legend and generated findings.

    ``stats``: ``compare_methods`` output for the ranking measures (bm25 and zeroshot at
    budget "0" appear in every budget's table). ``explain``: the per-query explainability
    table (``explain_per_query``), or None; without it explainability means are taken from
    ``stats`` when it holds those measures, and the random-word tests are not made.
    ``methods``: config order of the methods (rows: bm25, zeroshot, then this order).
    ``ranking_measures``: ranking columns (those in ``stats``). ``k``: the K of
    comprehensiveness / sufficiency (default: the smallest K present). ``budget_sizes``:
    budget -> number of training queries, for headings ("all" -> 240).
    """
    explain_means = _explain_means(explain, stats)
    k = k if k is not None else _infer_k(list(explain_means.measure))
    random_tests = None
    if explain is not None and len(explain) and k is not None:
        random_tests = compare_with_random(explain, k=k, alpha=float(stats.alpha.iloc[0]))
    sections = ["# Summary: ranking accuracy and explanation faithfulness\n"]
    for dataset in dict.fromkeys(stats.dataset):
        for budget in table_budgets(stats[stats.dataset == dataset]):
            rows = _rows_for(stats, dataset, budget)
            means = _rows_for(explain_means, dataset, budget)
            tests = None if random_tests is None else _rows_for(random_tests, dataset, budget)
            order = method_order(list(rows.method) + list(means.method), methods)
            sections.append(f"## {dataset} — {budget_label(budget, budget_sizes)}\n")
            sections.append(_table(rows, means, tests, order, ranking_measures, k, digits))
            random_tested = tests is not None and not tests.empty
            sections.append(_legend(stats, dataset, budget, k, random_tested, bool(_explain_columns(means, k))))
            sections.append("**Findings.** " + _findings(rows, means, tests, order, k) + "\n")
    return "\n".join(sections)


def _table(rows, means, tests, order, ranking_measures, k, digits) -> str:
    ranking = [m for m in ranking_measures if m in set(rows.measure)]
    explain_columns = _explain_columns(means, k)
    header = ["method", "queries", *ranking, *[h for h, _, _ in explain_columns]]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "|".join(":---:" for _ in header[2:]) + "|"]
    for method in order:
        first = _lookup(rows, method, ranking[0]) if ranking else None
        cells = [_name(method), str(int(first.queries)) if first is not None else MISSING]
        cells += [_ranking_cell(_lookup(rows, method, m), digits) for m in ranking]
        for _, measure, random_measure in explain_columns:
            value = _lookup(means, method, measure)
            if value is None or pd.isna(value["mean"]):
                cells.append(MISSING)
                continue
            cell = f"{value['mean']:.{digits}f}"
            if random_measure is not None:
                random = _lookup(means, method, random_measure)
                cell += f" vs {random['mean']:.{digits}f}" if random is not None else ""
                test = None if tests is None else _lookup(tests, method, measure)
                if test is not None and bool(test.significant):
                    cell += FAITHFUL if test.faithful else UNFAITHFUL
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _explain_columns(means: pd.DataFrame, k: int | None) -> list[tuple[str, str, str | None]]:
    """(header, measure, random measure) of the explainability columns whose measure some method has."""
    present = set(means.measure)
    columns = [(h.format(k=k), m.format(k=k), r and r.format(k=k)) for h, m, r in EXPLAIN_COLUMNS if k is not None or "{k}" not in m]
    return [c for c in columns if c[1] in present]


def _legend(stats, dataset, budget, k, random_tested, explained: bool) -> str:
    rows = _rows_for(stats, dataset, budget)
    level = float(stats.ci_level.iloc[0])
    alpha = float(stats.alpha.iloc[0])
    resamples = int(stats.resamples.iloc[0])
    family = {b: int(rows[(rows.budget == b)].bm25_p.notna().sum()) for b in dict.fromkeys(rows.budget)} if "bm25_p" in rows else {}
    families = ", ".join(f"{n} at budget {b}" for b, n in family.items() if n)
    parts = [
        f"*Ranking cells*: mean over the test queries (column *queries*) [{level:.0%} percentile bootstrap CI of the mean, "
        f"{resamples} resamples]. {BETTER} / {WORSE}: significantly better / worse than BM25 — two-sided paired t-test on "
        f"per-query values (queries aligned by query_id, inner join), Holm–Bonferroni correction over the methods × measures "
        f"compared with BM25 at the same budget ({families or 'no tests'}), α = {alpha:g}. "
        "BM25 and zero-shot are untrained (budget 0) and shared by every budget.",
    ]
    if explained:
        text = "*Explainability cells*: mean over explained documents, averaged per query, then over queries."
        if k is not None:
            text += (
                f" compr.@{k} / suff.@{k}: score drop when the top-{k} attributed words are removed / kept alone, in units of"
                f" the method's score spread over its candidates, followed by the same with {k} random words."
            )
        if k is not None and random_tested:
            text += (
                f" {FAITHFUL} / {UNFAITHFUL}: the attribution is significantly more / less faithful than {k} random words"
                " (paired t-test per method, Holm over methods × {comprehensiveness, sufficiency} at the same budget,"
                f" α = {alpha:g})."
            )
        text += (
            " Lexical shortcut: share of positive attribution on document words that also occur in the query."
            " Keyword coverage, verdict agreement and unsupported words check the written rationale."
        )
        parts += [text, f"{MISSING}: not available (BM25 has no attributions or rationales)."]
    return "\n>\n".join(f"> {p}" for p in parts) + "\n"


def _signed(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.3f}" for v in values)


def _findings(rows, means, tests, order, k) -> str:
    sentences = []
    primary = rows[(rows.measure == PRIMARY_MEASURE) & (rows.method != "bm25")] if "bm25_significant" in rows else rows.iloc[0:0]
    primary = primary.set_index("method").reindex([m for m in order if m in set(primary.method)])
    if not primary.empty and primary.bm25_p.notna().any():
        significant = primary.bm25_significant.fillna(False).astype(bool)
        better = primary[significant & (primary.bm25_diff > 0)]
        worse = primary[significant & (primary.bm25_diff < 0)]
        neither = primary[~significant & primary.bm25_p.notna()]
        if len(better):
            sentences.append(
                f"{_names(better.index)} rank{'s' if len(better) == 1 else ''} significantly better than BM25 on {PRIMARY_MEASURE} "
                f"(mean per-query difference {_signed(better.bm25_diff)})."
            )
        else:
            sentences.append(f"No method ranks significantly better than BM25 on {PRIMARY_MEASURE}.")
        if len(worse):
            verb = "ranks" if len(worse) == 1 else "rank"
            sentences.append(f"{_names(worse.index)} {verb} significantly worse ({_signed(worse.bm25_diff)}).")
        if len(neither):
            sentences.append(f"The difference is not significant for {_names(neither.index)} ({_signed(neither.bm25_diff)}).")
        trained = primary[~primary.index.isin(BASELINES) & primary.zeroshot_p.notna()] if "zeroshot_p" in primary else primary.iloc[0:0]
        if len(trained):
            gain = trained[trained.zeroshot_significant.fillna(False).astype(bool) & (trained.zeroshot_diff > 0)]
            loss = trained[trained.zeroshot_significant.fillna(False).astype(bool) & (trained.zeroshot_diff < 0)]
            text = "Against the untrained zero-shot model, training "
            if len(gain):
                text += f"significantly improved {PRIMARY_MEASURE} for {_names(gain.index)}"
            else:
                text += f"improved {PRIMARY_MEASURE} significantly for no method"
            text += f" and significantly lowered it for {_names(loss.index)}." if len(loss) else "."
            sentences.append(text)
    if tests is not None and k is not None:
        comprehensive = tests[tests.measure == f"comprehensiveness@{k}"]
        if len(comprehensive):
            beat = [m for m in order if m in set(comprehensive[comprehensive.faithful].method)]
            rest = [m for m in order if m in set(comprehensive.method) and m not in beat]
            effect = f"removing the top-{k} attributed words lowers the score significantly more than removing {k} random words"
            if beat:
                sentences.append(f"For {_names(beat)}, {effect}" + (f"; not for {_names(rest)}." if rest else "."))
            else:
                sentences.append(f"For no method, {effect}.")
    sentences += _accuracy_vs_faithfulness_findings(rows, means, order, k)
    shortcut = means[(means.measure == "lexical_shortcut")].dropna(subset=["mean"])
    if len(shortcut) > 1:
        top = shortcut.loc[shortcut["mean"].idxmax()]
        sentences.append(
            f"The lexical-shortcut index is highest for {_name(top.method)} ({top['mean']:.2f}): that share of its positive "
            "attribution falls on words shared with the query."
        )
    return " ".join(sentences) if sentences else "Not enough data for findings."


def _accuracy_vs_faithfulness_findings(rows, means, order, k) -> list[str]:
    """Did better ranking come with higher comprehensiveness? Compared across the methods of one table."""
    if k is None:
        return []
    measure = f"comprehensiveness@{k}"
    accuracy = rows[rows.measure == PRIMARY_MEASURE].set_index("method")["mean"]
    faithfulness = means[means.measure == measure].set_index("method")["mean"].dropna()
    both = [m for m in order if m in accuracy.index and m in faithfulness.index]
    if len(both) < 2:
        return []
    accuracy, faithfulness = accuracy[both], faithfulness[both]
    best, most = accuracy.idxmax(), faithfulness.idxmax()
    if best == most:
        text = (
            f"Better ranking came with more faithful attributions at the top: the best-ranking method, {_name(best)} "
            f"({PRIMARY_MEASURE} {accuracy[best]:.3f}), also has the highest {measure} ({faithfulness[best]:.3f})."
        )
    else:
        text = (
            f"Better ranking did not come with the most faithful attributions: the best-ranking method, {_name(best)} "
            f"({PRIMARY_MEASURE} {accuracy[best]:.3f}), has {measure} {faithfulness[best]:.3f}, below {_name(most)} "
            f"({faithfulness[most]:.3f}, {PRIMARY_MEASURE} {accuracy[most]:.3f})."
        )
    sentences = [text]
    if len(both) >= 3 and accuracy.nunique() > 1 and faithfulness.nunique() > 1:
        rho = scipy_stats.spearmanr(accuracy.to_numpy(), faithfulness.to_numpy()).statistic
        sentences.append(
            f"Across the {len(both)} explained methods, Spearman's ρ between mean {PRIMARY_MEASURE} and mean {measure} is "
            f"{rho:+.2f} (descriptive: {len(both)} methods are too few for a test)."
        )
    return sentences


def _is_true(value) -> bool:
    return value is True or (value is not pd.NA and not (isinstance(value, float) and np.isnan(value)) and bool(value))

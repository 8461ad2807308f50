"""Low word overlap: do the re-rankers help where BM25 fails to tell relevant from non-relevant?

On claim/evidence data LM re-rankers often fail to beat BM25, and how well BM25 separates a
query's relevant from its non-relevant documents explains their errors (Hagström et al.
2025, arXiv 2502.17036). Without new scoring:

- ``bm25_separation``: per test query, the AUC of BM25's scores for relevant against
  non-relevant among the judged documents of its re-ranked head (``evaluation.auc.roc_auc``:
  1 = every relevant document above every non-relevant one, 0.5 = no better than chance). A
  query whose judged head holds one class only (or no judged document) has no AUC: left out,
  and counted.
- ``separation_buckets``: the queries in ``buckets`` groups by quantiles of that AUC
  (terciles by default): the cut points are ``numpy.quantile`` of the AUCs (linear
  interpolation), and a query whose AUC equals a cut point goes to the upper bucket, so equal
  AUCs always share a bucket (a bucket may then be small or empty).
- ``gain_by_separation``: per method, budget and bucket, the method's gain over BM25 on one
  measure (per query: the method's value minus BM25's), its mean with a percentile bootstrap
  CI, a paired t-test, Holm over methods x buckets of a dataset and budget, and the minimal
  detectable effect of each test at the level Holm gave it (as ``statistics.compare_methods``).
  Random order of the same head is a row too, the control: bucketing by BM25's own
  separation favours any re-ordering where BM25 orders badly (regression to the mean), so a
  method helps where word overlap fails as far as it gains more than random order there.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.auc import roc_auc
from rerank_audit.evaluation.statistics import (
    POWER, TEST_SPLIT, bootstrap_ci, holm, holm_levels, minimal_detectable_effect, paired_t_test,
)  # fmt: skip
from rerank_audit.evaluation.summary import BETTER, MISSING, WORSE, _join, budget_label, method_order
from rerank_audit.methods import display_name
from rerank_audit.rerank import RANDOM_METHOD, judged_head

REFERENCE = "bm25"
GAIN_COLUMNS = [
    "dataset", "budget", "method", "measure", "bucket", "buckets", "separation_low", "separation_high", "queries",
    "bm25_mean", "mean", "gain", "ci_low", "ci_high", "ci_level", "resamples", "t", "p", "p_holm", "alpha", "significant", "mde",
]  # fmt: skip
_DTYPES = {
    c: "int64" if c in ("bucket", "buckets", "queries", "resamples") else "bool" if c == "significant" else "float64"
    for c in GAIN_COLUMNS
    if c not in ("dataset", "budget", "method", "measure")
}


def bm25_separation(bm25_run: pd.DataFrame, qrels: pd.DataFrame, query_ids: Sequence[str], depth: int, relevance_threshold: int) -> pd.DataFrame:
    """Per query of ``query_ids``: how well BM25's scores separate its relevant from its non-relevant head documents.

    ``bm25_run``: the first-stage run (RUN rows); its top ``depth`` per query is the head the
    re-rankers re-order. Returns query_id, judged (judged head documents), relevant (of them
    relevant at ``relevance_threshold``) and separation (their ``roc_auc``; NaN for one class
    only or none), one row per query in ``query_ids`` order.
    """
    judged = judged_head(bm25_run[bm25_run.query_id.isin(query_ids)], qrels, depth, relevance_threshold)
    rows = []
    for query_id in query_ids:
        pairs = judged[judged.query_id == query_id]
        rows.append({"query_id": query_id, "judged": len(pairs), "relevant": int(pairs.relevant.sum()), "separation": roc_auc(pairs.score, pairs.relevant)})
    return pd.DataFrame(rows, columns=["query_id", "judged", "relevant", "separation"]).astype({"judged": "int64", "relevant": "int64", "separation": "float64"})


def separation_buckets(separation: pd.Series, buckets: int = 3) -> pd.Series:
    """The bucket (1 = BM25 separates least, ``buckets`` = best) of each non-NaN value of ``separation``.

    Cut points: the 1/buckets, ..., (buckets-1)/buckets quantiles of the values (linear
    interpolation); a value equal to a cut point goes to the upper bucket. NaN values (one
    class only) are dropped. Returns int64 buckets indexed as ``separation``.
    """
    if buckets < 2:
        raise ValueError(f"need at least 2 buckets, got {buckets}")
    values = separation.dropna()
    if values.empty:
        return pd.Series(dtype="int64", index=values.index)
    cuts = np.quantile(values.to_numpy(dtype=np.float64), np.arange(1, buckets) / buckets)
    return pd.Series(1 + np.searchsorted(cuts, values.to_numpy(), side="right"), index=values.index, dtype="int64")


def gain_by_separation(
    per_query: pd.DataFrame,
    separation: pd.DataFrame,
    measure: str,
    buckets: int = 3,
    alpha: float = 0.05,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Each method's gain over BM25 on ``measure``, per bucket of BM25's separation (columns ``GAIN_COLUMNS``).

    ``per_query``: the per-query metrics table (test split used; NaN values dropped); BM25 is
    its method "bm25" (budget "0"). Random order (budget "0") is a row like the methods: bucketing
    by BM25's own separation favours *any* re-ordering where BM25 orders badly, so a method
    helps where word overlap fails only as far as it gains more than random order there.
    ``separation``: ``bm25_separation`` of the same dataset, bucketed by
    ``separation_buckets``. Per (dataset, budget, method, bucket) with at least one query that
    both the method and BM25 have: queries, bm25_mean and mean (the method's), gain (their
    mean difference) with its percentile bootstrap CI (``statistics.bootstrap_ci``), t and p of
    the two-sided paired t-test, p_holm (Holm over every method x bucket of one dataset and
    budget), significant (p_holm < alpha) and mde (the mean difference the test detects with
    80% power at the level Holm's step-down gave it). separation_low / separation_high: the
    range of BM25's AUCs in the bucket.
    """
    bucket = separation_buckets(separation.set_index("query_id").separation, buckets)
    table = per_query[(per_query.split == TEST_SPLIT) & (per_query.measure == measure)].dropna(subset=["value"])
    table = table[table.query_id.isin(bucket.index)]
    reference = table[(table.method == REFERENCE) & (table.budget == UNTRAINED_BUDGET)]
    ranges = separation.set_index("query_id").separation.groupby(bucket).agg(["min", "max"])
    rows = []
    for (dataset, budget, method), group in table[table.method != REFERENCE].groupby(["dataset", "budget", "method"], sort=False):
        own, bm25 = group.set_index("query_id").value.align(reference[reference.dataset == dataset].set_index("query_id").value, join="inner")
        in_bucket = own.groupby(bucket.reindex(own.index)).groups
        for b, queries in sorted(in_bucket.items()):
            values, base = own[queries].to_numpy(), bm25[queries].to_numpy()
            t, p = paired_t_test(values, base)
            low, high = bootstrap_ci(values - base, n_resamples, confidence, seed)
            rows.append(
                {
                    "dataset": dataset, "budget": budget, "method": method, "measure": measure, "bucket": int(b), "buckets": buckets,
                    "separation_low": ranges.loc[b, "min"], "separation_high": ranges.loc[b, "max"], "queries": len(values),
                    "bm25_mean": float(base.mean()), "mean": float(values.mean()), "gain": float((values - base).mean()),
                    "ci_low": low, "ci_high": high, "ci_level": confidence, "resamples": n_resamples, "t": t, "p": p,
                    "alpha": alpha, "sd": float(np.std(values - base, ddof=1)) if len(values) > 1 else np.nan,
                }  # fmt: skip
            )
    result = pd.DataFrame(rows, columns=[*GAIN_COLUMNS, "sd"])
    if len(result):
        families = result.groupby(["dataset", "budget"], sort=False).p
        result["p_holm"] = families.transform(lambda p: holm(p.to_numpy()))
        levels = families.transform(lambda p: holm_levels(p.to_numpy(), alpha))
        result["mde"] = [minimal_detectable_effect(sd, n, level, POWER) for sd, n, level in zip(result.sd, result.queries, levels)]
    result["significant"] = result.p_holm < alpha
    return result.drop(columns="sd").astype(_DTYPES)


def _queries(n: int) -> str:
    return f"{n} {'query' if n == 1 else 'queries'}"


def bucket_name(bucket: int, buckets: int) -> str:
    """"low" / "middle" / "high" for terciles, "low" / "high" for halves, else "2 of 4"."""
    names = {2: ("low", "high"), 3: ("low", "middle", "high")}.get(buckets)
    return names[bucket - 1] if names else f"{bucket} of {buckets}"


def _bucket_headers(separation: pd.DataFrame, buckets: int, digits: int) -> dict[int, str]:
    """Each bucket's name, the range of BM25's AUCs in it and its number of queries."""
    values = separation.set_index("query_id").separation
    bucket = separation_buckets(values, buckets)
    headers = {}
    for b in range(1, buckets + 1):
        in_bucket = values[bucket.index[bucket == b]]
        low, high = (f"{in_bucket.min():.{digits}f}", f"{in_bucket.max():.{digits}f}") if len(in_bucket) else ("", "")
        auc = "" if not low else f"AUC {low}, " if low == high else f"AUC {low}–{high}, "
        headers[b] = f"{bucket_name(b, buckets)} ({auc}{_queries(len(in_bucket))})"
    return headers


def _verdict(rows: pd.DataFrame, random: pd.DataFrame, order: Sequence[str]) -> str:
    """What the Holm-significant gains of one bucket's methods (``rows``) say, beside random order's gain
    there (``random``: its row, or none), e.g. "sft gains over BM25, qlm falls behind it (random order ...)"."""

    def names(selected: pd.DataFrame) -> list[str]:
        return [display_name(m) for m in order if m in set(selected.method)]

    chance = f" (random order of the same head: {random.gain.iloc[0]:+.2f} [{random.ci_low.iloc[0]:+.2f}, {random.ci_high.iloc[0]:+.2f}])" if len(random) else ""
    above, below = names(rows[rows.significant & (rows.gain > 0)]), names(rows[rows.significant & (rows.gain < 0)])
    if not above and not below:
        detectable = rows.mde.dropna()
        if detectable.empty:
            return "no method differs significantly from BM25" + chance
        low, high = detectable.min(), detectable.max()
        effects = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"
        return f"no method differs significantly from BM25 (its tests detect differences of {effects} with 80% power){chance}"
    gains = f"{_join(above)} {'gains' if len(above) == 1 else 'gain'} over BM25" if above else "no method gains over BM25"
    if not below:
        return gains + chance
    falls = f"{_join(below)} {'falls' if len(below) == 1 else 'fall'} behind it"
    return (f"{gains}, {falls}" if above else f"{gains}; {falls}") + chance


def separation_findings(gains: pd.DataFrame, separation: pd.DataFrame, buckets: int, order: Sequence[str],
                        budget_sizes: Mapping[str, int] | None = None, digits: int = 2) -> list[str]:
    """One sentence per budget: do the re-rankers help where BM25 separates least, and where it separates best?"""
    headers = _bucket_headers(separation, buckets, digits)
    # Random order (budget 0) is every budget's control.
    random, methods = gains[gains.method == RANDOM_METHOD], gains[gains.method != RANDOM_METHOD]
    budgets = list(dict.fromkeys(methods.budget))
    sentences = []
    for budget in budgets:
        rows = methods[methods.budget == budget]
        prefix = f"{budget_label(budget, budget_sizes).capitalize()}: w" if len(budgets) > 1 else "W"
        low, high = (_verdict(rows[rows.bucket == b], random[random.bucket == b], order) for b in (1, buckets))
        sentences.append(
            f"{prefix}here BM25 separates relevant from non-relevant least, {headers[1]}, {low}; "
            f"where it separates best, {headers[buckets]}, {high}."
        )
    return sentences


def separation_markdown(
    gains: pd.DataFrame,
    separation: pd.DataFrame,
    dataset: str,
    measure: str,
    buckets: int,
    methods: Sequence[str] | None = None,
    budget_sizes: Mapping[str, int] | None = None,
    digits: int = 2,
) -> str:
    """separation.md: per method and budget, its gain over BM25 in each bucket of BM25's separation, a legend and the findings."""
    left_out = int(separation.separation.isna().sum())
    lines = [f"# Gain over BM25 where word overlap fails: {dataset}", ""]
    if separation.separation.notna().sum() == 0:
        return "\n".join(lines + [f"No test query's judged head holds both relevant and non-relevant documents ({_queries(left_out)}).", ""])
    headers = _bucket_headers(separation, buckets, digits)
    lines += [
        "| method | budget | " + " | ".join(headers.values()) + " |",
        "|---|---|" + ":---:|" * buckets,
    ]
    bm25 = gains.drop_duplicates("bucket").set_index("bucket").bm25_mean
    lines.append(f"| BM25 ({measure}) | {budget_label(UNTRAINED_BUDGET, budget_sizes)} | "
                 + " | ".join(f"{bm25[b]:.{digits}f}" if b in bm25.index else MISSING for b in range(1, buckets + 1)) + " |")  # fmt: skip

    def cell(row) -> str:
        marker = (BETTER if row.gain > 0 else WORSE) if row.significant else ""
        return f"{row.gain:+.{digits}f} [{row.ci_low:+.{digits}f}, {row.ci_high:+.{digits}f}]{marker}"

    order = method_order(list(gains.method), methods)
    for budget in dict.fromkeys(gains.budget):
        rows = gains[gains.budget == budget]
        for method in [m for m in order if m in set(rows.method)]:
            by_bucket = rows[rows.method == method].set_index("bucket")
            cells = [cell(by_bucket.loc[b]) if b in by_bucket.index else MISSING for b in range(1, buckets + 1)]
            lines.append(f"| {display_name(method)} | {budget_label(budget, budget_sizes)} | " + " | ".join(cells) + " |")
    level, resamples = (float(gains.ci_level.iloc[0]), int(gains.resamples.iloc[0])) if len(gains) else (0.95, 0)
    lines += [
        "",
        "> BM25's separation of a test query: the AUC of its BM25 scores, relevant against non-relevant, among the judged "
        "documents of its re-ranked head (1: every relevant document above every non-relevant one; 0.5: chance; ties ½). "
        f"The queries in {buckets} buckets by quantiles of that AUC (equal AUCs share a bucket); {_queries(left_out)} "
        "whose judged head holds one class only (or no judged document) left out. BM25 row: its mean "
        f"{measure} in the bucket. Method rows: the mean gain over BM25 per query ({measure}, method − BM25) "
        f"[{level:.0%} percentile bootstrap CI, {resamples} resamples of the bucket's queries]; {BETTER} / {WORSE}: "
        "significantly above / below BM25 (paired t-test, Holm over methods × buckets per budget). Random order (the same "
        "head shuffled) is the control: bucketing by BM25's own separation favours any re-ordering where BM25 orders badly, "
        "so a method helps where word overlap fails as far as it gains more than random order there. Low word overlap "
        "between a query and its relevant documents is where BM25 separates least (Hagström et al. 2025).",
        "",
        "**Findings.** " + " ".join(separation_findings(gains, separation, buckets, order, budget_sizes, digits)),
        "",
    ]
    return "\n".join(lines)

"""Significance and uncertainty of per-query metrics: bootstrap CIs, paired t-tests, Holm.

Every method is judged on the same test queries, so comparisons are *paired*: a method and
its reference are aligned by ``query_id`` (inner join; a query missing from either side, or
with a NaN value on either side, is left out of that comparison only) and the test runs on
the per-query differences. Holm-Bonferroni controls the family-wise error over the tested
family of one training budget: primary measures x methods x comparisons.

Comparisons, in the order they are tested: ``random`` (the re-ranked head in random order:
does a method order anything at all?), ``bm25`` (does it beat the first stage it re-orders?)
and ``untrained`` (did training help over the same family's untrained model: zero-shot for
sft, qlm for qlm_sft: ``rerank_audit.methods``). bm25 is also compared with random.

The same functions serve ranking measures (nDCG@10, AP, ...) and explainability measures in
the same long format (``explain_per_query`` turns the explain stage's tables into it:
measure names such as "comprehensiveness@5").

A test that finds nothing states what it could have found: every Holm-adjusted test carries
its minimal detectable effect at 80% power (``POWER``) at the level Holm's step-down gave it
(``mde`` columns). ``tost_paired`` tests equivalence within a margin, for "equal" claims.

One module past 400 lines, on purpose: a comparison's paired alignment, its Holm family, its
detectable effect and its equivalence test must be computed together, from the same queries.
"""

from __future__ import annotations

import re
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize as scipy_optimize
from scipy import stats as scipy_stats

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.data import measures
from rerank_audit.methods import BASELINE_NAMES

BASELINES = tuple(BASELINE_NAMES)  # the rows that open every table and figure: random order, BM25
REFERENCES = ("random", "bm25")  # every method is compared with these
COMPARISONS = (*REFERENCES, "untrained")  # column prefixes; "untrained": the method's own untrained counterpart
TEST_SPLIT = "test"

# Columns of ``compare_methods`` before the per-comparison ones.
STAT_COLUMNS = [
    "dataset", "budget", "method", "measure", "queries", "mean", "ci_low", "ci_high", "ci_level", "resamples", "alpha",
    "untrained_method",  # the reference of the "untrained" comparison (None: not a trained method)
]  # fmt: skip
# Per-comparison columns, prefixed "<comparison>_" (e.g. "bm25_p_holm"); NaN / NA where untested.
BASELINE_COLUMNS = ["queries", "diff", "t", "p", "p_holm", "dz", "significant", "mde", "tost_p", "tost_p_holm", "equivalent"]
POWER = 0.8  # the power at which a test's minimal detectable effect (``mde`` columns) is stated

def bootstrap_ci(values, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    ``values``: 1-d, finite (NaN is an error: drop undefined queries first).
    ``n_resamples`` resamples of len(values) draws with replacement, all drawn at once from
    ``numpy.random.default_rng(seed)``; the interval is the (1 - confidence) / 2 and
    (1 + confidence) / 2 quantiles of the resampled means. Returns (nan, nan) for no values,
    (v, v) for one.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(values).any():
        raise ValueError(f"bootstrap_ci got {int(np.isnan(values).sum())} NaN value(s); drop them before resampling")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _paired_differences(a, b) -> np.ndarray:
    """a - b; two Series are aligned by index (inner join), anything else by position."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.align(b, join="inner")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return a - b


def paired_t_test(a, b) -> tuple[float, float]:
    """Two-sided paired t-test of mean(a - b) = 0; returns (t, p).

    ``a``, ``b``: per-query values of two systems in the same query order (or two Series
    indexed by query_id, aligned by an inner join). t = mean(d) / (sd(d) / sqrt(n)) with
    sd the sample standard deviation (n - 1), p from Student's t with n - 1 degrees of
    freedom. Zero variance: identical values give (0.0, 1.0); a constant non-zero difference
    gives (+-inf, 0.0), the limit of the formula. Fewer than two pairs: (nan, nan).
    """
    d = _paired_differences(a, b)
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    mean = d.mean()
    sd = d.std(ddof=1)
    if sd == 0:
        return (0.0, 1.0) if mean == 0 else (float(np.copysign(np.inf, mean)), 0.0)
    t = mean / (sd / np.sqrt(n))
    p = 2 * scipy_stats.t.sf(abs(t), df=n - 1)
    return float(t), float(p)


def cohens_dz(a, b) -> float:
    """Paired effect size d_z = mean(a - b) / sd(a - b) (sample sd, n - 1).

    Same alignment as ``paired_t_test``. Zero variance: 0.0 for identical values, +-inf for a
    constant non-zero difference. Fewer than two pairs: nan.
    """
    d = _paired_differences(a, b)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float(np.copysign(np.inf, d.mean()))
    return float(d.mean() / sd)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    With the m finite p-values sorted ascending p_(1) <= ... <= p_(m):
    adjusted_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j)), so adjusted values are
    monotone in the raw ones and never exceed 1. NaN entries (comparisons not made) stay NaN
    and do not count towards m.
    """
    p, order = _holm_order(p_values)
    adjusted = np.full_like(p, np.nan)
    m = len(order)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def holm_levels(p_values, alpha: float) -> np.ndarray:
    """The level each test faces in Holm's step-down, in the input order.

    The test ranked i-th (1-based) by raw p among the m finite p-values is compared with
    alpha / (m - i + 1): alpha / m for the smallest p, alpha for the largest; ties keep
    their input order, as in ``holm``. NaN entries stay NaN and do not count towards m.
    """
    p, order = _holm_order(p_values)
    levels = np.full_like(p, np.nan)
    levels[order] = alpha / (len(order) - np.arange(len(order)))
    return levels


def _holm_order(p_values) -> tuple[np.ndarray, np.ndarray]:
    """(p as float64, the positions of its finite entries sorted by p ascending, stably)."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    tested = np.flatnonzero(~np.isnan(p))
    return p, tested[np.argsort(p[tested], kind="stable")]


def minimal_detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest true mean paired difference a two-sided paired t-test detects with ``power``.

    ``sd``: standard deviation of the paired differences (in the measure's units); ``n``:
    number of pairs; ``alpha``: the test's two-sided level; ``power`` in (alpha, 1). Returns
    the effect delta >= 0 in the measure's units at which the exact power of the test,
    P(|T| > t_{1-alpha/2, n-1}) with T noncentral t (n - 1 degrees of freedom, noncentrality
    delta sqrt(n) / sd, ``scipy.stats.nct``), equals ``power``, solved numerically. The normal
    approximation (z_{1-alpha/2} + z_power) sd / sqrt(n) lies below it; the same with t
    quantiles of n - 1 degrees of freedom is within 1% of it at alpha 0.05 from 5 pairs on, and
    further below it at small levels with few pairs (5% at 10 pairs and alpha 0.0005). NaN for
    n < 2, a NaN ``sd`` or ``alpha``, or where scipy cannot evaluate the power (few pairs at
    tiny levels: 2 pairs below alpha 1e-4, 3 below 1e-9); 0.0 for sd = 0 (``paired_t_test``
    then rejects any non-zero difference).
    """
    if not n >= 2 or np.isnan(sd) or np.isnan(alpha):
        return float("nan")
    if not 0 < alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha {alpha}, power {power}")
    if sd == 0:
        return 0.0
    df, critical = n - 1, scipy_stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(dz: float) -> float:
        shift = dz * np.sqrt(n)
        # The far tail's probability; scipy gives NaN there for a large shift, where it is 0.
        against = np.nan_to_num(scipy_stats.nct.cdf(-critical, df, shift))
        return scipy_stats.nct.sf(critical, df, shift) + against - power

    # scipy's noncentral t warns or gives NaN where it loses accuracy (1 degree of freedom and
    # shifts of thousands): NaN then rather than a wrong effect.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            # Bracket the standardised effect from the t-quantile approximation (power rises with it).
            high = (critical + scipy_stats.t.ppf(power, df)) / np.sqrt(n)
            while shortfall(high) < 0:
                high *= 2
            return float(sd * scipy_optimize.brentq(shortfall, 0.0, high, xtol=1e-12))
        except (RuntimeWarning, SystemError, ValueError):  # scipy's C code raises the warning as SystemError
            return float("nan")


def tost_paired(a, b, margin: float, alpha: float) -> tuple[float, bool]:
    """Schuirmann's two one-sided paired t-tests (TOST) of equivalence: |mean(a - b)| < margin.

    Same alignment as ``paired_t_test``. ``margin`` > 0 in the measure's units. With d = a - b
    over n pairs and se = sd(d) / sqrt(n): p_lower = P(T > (mean(d) + margin) / se) tests
    H0 mean <= -margin, p_upper = P(T < (mean(d) - margin) / se) tests H0 mean >= margin, T
    Student's t with n - 1 degrees of freedom. Returns (p, equivalent): p = max(p_lower,
    p_upper), equivalent = p < alpha (both nulls rejected: the 1 - 2 alpha CI of the mean
    lies within +-margin). Zero variance: p = 0.0 if |mean(d)| < margin else 1.0. Fewer than
    two pairs: (nan, False).
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    d = _paired_differences(a, b)
    n = len(d)
    if n < 2:
        return float("nan"), False
    mean, sd = d.mean(), d.std(ddof=1)
    if sd == 0:
        p = 0.0 if abs(mean) < margin else 1.0
    else:
        se = sd / np.sqrt(n)
        p_lower = scipy_stats.t.sf((mean + margin) / se, df=n - 1)
        p_upper = scipy_stats.t.cdf((mean - margin) / se, df=n - 1)
        p = float(max(p_lower, p_upper))
    return p, bool(p < alpha)


def _ordered(values: Sequence[str], first: Sequence[str]) -> list[str]:
    """Distinct ``values``, those in ``first`` first (in that order), the rest as they appear."""
    distinct = list(dict.fromkeys(values))
    return [v for v in first if v in distinct] + [v for v in distinct if v not in first]


def compare_methods(
    per_query: pd.DataFrame,
    measures: Sequence[str] | None = None,
    primary: Sequence[str] | None = None,
    untrained: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.05,
    equivalence_margin: float | None = None,
) -> pd.DataFrame:
    """Mean, bootstrap CI and paired tests against each comparison, per dataset x budget x method x measure.

    ``per_query``: the per-query metrics table (dataset, method, budget, split, query_id,
    measure, value); only split "test" is used, NaN values are dropped. Every method is
    compared with random and bm25 (budget "0": the references for every budget), and a
    trained method with its untrained counterpart ``untrained[method]`` (budget "0", e.g.
    {"sft": "zeroshot", "qlm_sft": "qlm"}; a method not in it gets no such test).
    ``measures``: the measures to summarise (default: all in the table). ``primary``: those
    of them that are tested (default: all of ``measures``); the others get a mean and CI but
    NaN test columns. Pass ranking and explainability measures in separate calls to keep
    their families apart.

    Pairing: a method and its reference are aligned by query_id with an inner join (queries
    missing or NaN on either side are left out); ``<comparison>_queries`` says how many pairs
    each test used. bm25 is tested against random, never random against bm25; nobody is
    tested against itself.

    Holm correction: one family per dataset and budget, made of every test in it: primary
    measures x methods x comparisons (at budget "0": the untrained methods' tests).

    Returns one row per (dataset, budget, method, measure), ordered by dataset, budget
    ("0" first), method (``BASELINES`` first) and measure, with columns ``STAT_COLUMNS``
    (queries: non-NaN values; mean; ci_low/ci_high: percentile bootstrap of the mean at
    ``confidence`` = ci_level with ``n_resamples`` = resamples) and, for every comparison c
    in ``COMPARISONS``, the columns c_queries, c_diff (mean of method -
    reference over the pairs), c_t, c_p, c_p_holm, c_dz (Cohen's d_z) and c_significant
    (c_p_holm < alpha; NA when untested), and c_mde: the minimal detectable effect of that
    test (``minimal_detectable_effect`` at ``POWER``, in the measure's units) from the SD of
    its paired differences and c_queries, at the level it faces in Holm's step-down: alpha /
    (m - i + 1) for the test ranked i-th by raw p among the m tests of its family
    (``holm_levels``); NaN when untested.

    ``equivalence_margin`` (in the measures' units; None: no equivalence tests): every tested
    comparison also gets Schuirmann's TOST (``tost_paired``) of |mean difference| <
    margin: c_tost_p, c_tost_p_holm (Holm over the same family's TOSTs: a separate family,
    as each answers another question) and c_equivalent (c_tost_p_holm < alpha). A
    difference that is neither significant nor equivalent is one the data cannot decide.
    """
    missing = {"dataset", "method", "budget", "split", "query_id", "measure", "value"} - set(per_query.columns)
    if missing:
        raise ValueError(f"per-query table lacks columns {sorted(missing)}")
    table = per_query[per_query.split == TEST_SPLIT]
    if measures is not None:
        unknown = [m for m in measures if m not in set(table.measure)]
        if unknown:
            raise ValueError(f"measures {unknown} not in the per-query table (test split); it has {sorted(set(table.measure))}")
        table = table[table.measure.isin(measures)]
    table = table.dropna(subset=["value"])
    keys = ["dataset", "method", "budget", "measure", "query_id"]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        raise ValueError(f"per-query table has {int(duplicated.sum())} repeated rows, e.g. {table[duplicated].iloc[0][keys].to_dict()}")
    measure_order = list(measures) if measures is not None else list(dict.fromkeys(table.measure))
    tested_measures = set(measure_order if primary is None else primary)
    unknown = sorted(tested_measures - set(measure_order))
    if unknown:
        raise ValueError(f"primary measures {unknown} are not among the summarised measures {measure_order}")
    untrained = dict(untrained or {})
    fixed = [*REFERENCES, *untrained.values()]
    reference_budgets = table[table.method.isin(fixed)].groupby("method").budget.unique()
    several = {m: list(b) for m, b in reference_budgets.items() if len(b) > 1}
    if several:
        raise ValueError(f"a reference (random, bm25, an untrained method) must have one budget, got {several}")

    rows = []
    for dataset in dict.fromkeys(table.dataset):
        in_dataset = table[table.dataset == dataset]
        series = {
            (method, budget, measure): group.set_index("query_id").value
            for (method, budget, measure), group in in_dataset.groupby(["method", "budget", "measure"], sort=False)
        }
        reference = {(method, measure): values for (method, _, measure), values in series.items() if method in fixed}
        budgets = _ordered(in_dataset.budget, [UNTRAINED_BUDGET])
        methods = _ordered(in_dataset.method, list(BASELINES))
        for budget in budgets:
            for method in methods:
                for measure in measure_order:
                    values = series.get((method, budget, measure))
                    if values is None:
                        continue
                    low, high = bootstrap_ci(values.to_numpy(), n_resamples, confidence, seed)
                    row = {
                        "dataset": dataset, "budget": budget, "method": method, "measure": measure,
                        "queries": len(values), "mean": float(values.mean()), "ci_low": low, "ci_high": high,
                        "ci_level": confidence, "resamples": n_resamples, "alpha": alpha, "untrained_method": untrained.get(method),
                    }  # fmt: skip
                    for comparison in COMPARISONS:
                        against = untrained.get(method) if comparison == "untrained" else comparison
                        compared = reference.get((against, measure)) if measure in tested_measures else None
                        row.update(_comparison_test(values, method, comparison, against, compared, equivalence_margin, alpha))
                    rows.append(row)

    columns = STAT_COLUMNS + [f"{b}_{c}" for b in COMPARISONS for c in BASELINE_COLUMNS]
    # "<comparison>_sd": the SD of each test's differences, dropped once its mde is computed.
    result = pd.DataFrame(rows, columns=columns + [f"{b}_sd" for b in COMPARISONS])
    # Holm family: one dataset, one budget; every (method, primary measure, comparison) tested.
    p_columns = [f"{b}_p" for b in COMPARISONS]
    levels = pd.DataFrame(np.nan, index=result.index, columns=list(COMPARISONS))
    for _, family in result.groupby(["dataset", "budget"], sort=False):
        p = family[p_columns].to_numpy(dtype=np.float64).ravel()
        result.loc[family.index, [f"{b}_p_holm" for b in COMPARISONS]] = holm(p).reshape(len(family), len(COMPARISONS))
        levels.loc[family.index] = holm_levels(p, alpha).reshape(len(family), len(COMPARISONS))
        tost = family[[f"{b}_tost_p" for b in COMPARISONS]].to_numpy(dtype=np.float64).ravel()
        result.loc[family.index, [f"{b}_tost_p_holm" for b in COMPARISONS]] = holm(tost).reshape(len(family), len(COMPARISONS))
    result = _with_top_tests(result, table, tested_measures)
    for comparison in COMPARISONS:
        result[f"{comparison}_mde"] = _detectable(result.pop(f"{comparison}_sd"), result[f"{comparison}_queries"], levels[comparison])
        tested = result[f"{comparison}_p_holm"].notna()
        flag = pd.array([pd.NA] * len(result), dtype="boolean")
        flag[tested.to_numpy()] = (result.loc[tested, f"{comparison}_p_holm"] < alpha).to_numpy()
        result[f"{comparison}_significant"] = flag
        equivalent = pd.array([pd.NA] * len(result), dtype="boolean")
        tested = result[f"{comparison}_tost_p_holm"].notna()
        equivalent[tested.to_numpy()] = (result.loc[tested, f"{comparison}_tost_p_holm"] < alpha).to_numpy()
        result[f"{comparison}_equivalent"] = equivalent
        result[f"{comparison}_queries"] = result[f"{comparison}_queries"].astype("Int64")
    return result.astype({"queries": "int64", "resamples": "int64"})


def _with_top_tests(result: pd.DataFrame, table: pd.DataFrame, tested_measures: set) -> pd.DataFrame:
    """``result`` with ``top_method`` and ``top_p_holm`` on the rows of each table's own budget.

    A table is one dataset and budget with the budget-"0" rows (with trained budgets, budget
    "0" has no table of its own). On each tested measure, the method with the highest mean is
    tested (paired t) against every other method of the table but random; ``top_p_holm`` is the
    largest Holm-adjusted p of those tests (NaN when one could not be made). A report names a
    best method only when it is below alpha: it then beats each other method.
    """
    result = result.assign(top_method=None, top_p_holm=np.nan)
    for dataset, budget in result[["dataset", "budget"]].drop_duplicates().itertuples(index=False):
        in_dataset = result[result.dataset == dataset]
        if budget == UNTRAINED_BUDGET and set(in_dataset.budget) != {UNTRAINED_BUDGET}:
            continue
        rows = in_dataset[in_dataset.budget.isin({UNTRAINED_BUDGET, budget}) & (in_dataset.method != "random")]
        values = table[table.dataset == dataset]
        for measure in tested_measures:
            candidates = rows[rows.measure == measure]
            if len(candidates) < 2:
                continue
            series = {key: g.set_index("query_id").value for key, g in values[values.measure == measure].groupby(["method", "budget"], sort=False)}
            keys = list(zip(candidates.method, candidates.budget))
            top = keys[int(np.argmax(candidates["mean"].to_numpy()))]
            adjusted = holm(np.array([paired_t_test(series[top], series[key])[1] for key in keys if key != top], dtype=np.float64))
            own = (result.dataset == dataset) & (result.budget == budget) & (result.measure == measure)
            result.loc[own, "top_method"] = top[0]
            result.loc[own, "top_p_holm"] = float(np.max(adjusted))
    return result


def _comparison_test(
    values: pd.Series, method: str, comparison: str, against: str | None, reference: pd.Series | None, margin: float | None, alpha: float
) -> dict:
    """The ``comparison`` columns of one compare_methods row: ``method`` against the method
    ``against`` (its values ``reference``); NaN when no test is made (the TOST: without ``margin``)."""
    untested = {f"{comparison}_{c}": np.nan for c in BASELINE_COLUMNS}
    if reference is None or method == against or (method, against) == ("random", "bm25"):
        return untested
    method_values, reference_values = values.align(reference, join="inner")
    if len(method_values) == 0:
        return untested
    t, p = paired_t_test(method_values, reference_values)
    differences = method_values - reference_values
    return {
        f"{comparison}_sd": float(differences.std(ddof=1)),
        f"{comparison}_queries": len(method_values),
        f"{comparison}_diff": float(differences.mean()),
        f"{comparison}_t": t,
        f"{comparison}_p": p,
        f"{comparison}_p_holm": np.nan,  # filled per family by compare_methods
        f"{comparison}_dz": cohens_dz(method_values, reference_values),
        f"{comparison}_significant": np.nan,
        f"{comparison}_mde": np.nan,  # filled by compare_methods from the Holm level
        f"{comparison}_tost_p": tost_paired(method_values, reference_values, margin, alpha)[0] if margin is not None else np.nan,
        f"{comparison}_tost_p_holm": np.nan,  # filled per family by compare_methods
        f"{comparison}_equivalent": np.nan,
    }


def _detectable(sd, n, level) -> list[float]:
    """``minimal_detectable_effect`` at ``POWER`` of each test, from equal-length sequences of
    the SDs of its differences, its pairs and its level (NaN where untested)."""
    return [minimal_detectable_effect(s, q, a) for s, q, a in zip(sd, n, level)]


def explain_per_query(
    faithfulness: pd.DataFrame | None, rationale_metrics: pd.DataFrame | None, dataset: str
) -> pd.DataFrame:
    """The explain stage's per-pair tables in the per-query metrics format of ``compare_methods``.

    ``faithfulness``: FAITHFULNESS rows (method, budget, query_id, doc_id, k, ...);
    ``rationale_metrics``: RATIONALE_METRICS rows; either may be None. Each query's value is
    the mean over its explained documents (NaN pairs left out; a query with no defined
    value is dropped). Measures: comprehensiveness@k, comprehensiveness_random@k,
    sufficiency@k, sufficiency_random@k for every k, deletion_auc, deletion_auc_random,
    lexical_shortcut, lexical_baseline, lexical_excess, marker_comprehensiveness(_random)
    (known-answer controls), keyword_coverage, verdict_agreement, unsupported_rate,
    rationale_comprehensiveness, rationale_comprehensiveness_random, and, where ``rationale_metrics`` has an ``end`` column,
    verdict_agreement_top / verdict_agreement_bottom (the mean over the query's pairs from
    that end of the head). A measure whose column is absent is left out. Faithfulness
    values keep their normalisation (score drop / scale). Split is "test": only test queries
    are explained.
    """
    parts = []
    pair = ["method", "budget", "query_id", "doc_id"]
    if faithfulness is not None and len(faithfulness):
        at_k = faithfulness.melt(id_vars=pair + ["k"], value_vars=measures.columns("faithfulness", at_k=True), var_name="measure")
        at_k["measure"] = at_k.measure + "@" + at_k.k.astype(str)
        # Deletion AUC and the lexical measures are per pair, repeated over k: take them once.
        per_pair = [m for m in measures.columns("faithfulness", at_k=False) if m in faithfulness.columns]
        once = faithfulness.drop_duplicates(pair).melt(id_vars=pair, value_vars=per_pair, var_name="measure")
        parts += [at_k.drop(columns="k"), once]
    if rationale_metrics is not None and len(rationale_metrics):
        stated = [m for m in measures.columns("rationale") if m in rationale_metrics.columns]
        parts.append(rationale_metrics.melt(id_vars=pair, value_vars=stated, var_name="measure"))
        if "end" in rationale_metrics.columns:
            by_end = [m.name for m in measures.MEASURES if m.by_end]
            by_end = rationale_metrics.melt(id_vars=pair + ["end"], value_vars=by_end, var_name="measure")
            by_end["measure"] = by_end.measure + "_" + by_end.end
            parts.append(by_end.drop(columns="end"))
    columns = ["dataset", "method", "budget", "split", "query_id", "measure", "value"]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "str") for c in columns})
    pairs = pd.concat(parts, ignore_index=True).dropna(subset=["value"])
    per_query = pairs.groupby(["method", "budget", "measure", "query_id"], sort=False).value.mean().reset_index()
    return per_query.assign(dataset=dataset, split=TEST_SPLIT, value=per_query.value.astype("float64"))[columns]


RATIONALE_COMPREHENSIVENESS = "rationale_comprehensiveness"


def compare_with_random(explain: pd.DataFrame, k: int | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Do the attributions and the rationales beat random words? Paired t-tests of
    comprehensiveness@k and sufficiency@k against their ``_random@k`` baselines, and of
    rationale comprehensiveness (the rationale's stated words removed) against as many random
    words, per dataset x budget x method.

    ``explain``: per-query explainability table (``explain_per_query``); ``k``: the K to test
    (default: every K in the table). Queries are aligned by query_id (inner join). Holm
    correction within one dataset and budget across methods x measures (x K).

    Returns dataset, budget, method, measure (e.g. "comprehensiveness@5"), queries, mean,
    random_mean, diff (mean - random_mean), t, p, p_holm, significant (p_holm < alpha),
    faithful (significant and diff in the faithful direction: comprehensiveness above random,
    sufficiency below) and mde: the minimal detectable effect of the test
    (``minimal_detectable_effect`` at ``POWER``) from the SD of its paired differences and
    queries, at its level in Holm's step-down: alpha / (m - i + 1) for the test ranked i-th by
    raw p among the m tests of its dataset and budget (``holm_levels``).
    """
    table = explain[explain.split == TEST_SPLIT].dropna(subset=["value"])
    tested = []  # (measure, its random baseline, the faithful direction), in the table's order
    for reported in table.measure.drop_duplicates():
        measure, at = measures.measure_of(reported), re.search(r"@(\d+)$", reported)
        if measure is None or not measure.direction or reported.startswith(f"{measure.name}_"):
            continue
        if measure.at_k and at and (k is None or int(at.group(1)) == k):
            tested.append((reported, f"{measure.name}_random@{at.group(1)}", measure.direction))
        elif not measure.at_k and reported == measure.name:
            tested.append((reported, f"{measure.name}_random", measure.direction))
    rows = []
    for (dataset, budget, method), group in table.groupby(["dataset", "budget", "method"], sort=False):
        values = {measure: g.set_index("query_id").value for measure, g in group.groupby("measure", sort=False)}
        for measure, random_measure, direction in tested:
            actual, random = values.get(measure), values.get(random_measure)
            if actual is None or random is None:
                continue
            actual, random = actual.align(random, join="inner")
            t, p = paired_t_test(actual, random)
            differences = actual - random
            rows.append(
                {
                    "dataset": dataset, "budget": budget, "method": method, "measure": measure,
                    "queries": len(actual), "mean": float(actual.mean()), "random_mean": float(random.mean()),
                    "diff": float(differences.mean()), "t": t, "p": p, "direction": direction,
                    "sd": float(differences.std(ddof=1)),
                }  # fmt: skip
            )
    columns = [
        "dataset", "budget", "method", "measure", "queries", "mean", "random_mean", "diff", "t", "p", "p_holm", "significant", "faithful", "mde",
    ]  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=columns)
    result = pd.DataFrame(rows)
    families = result.groupby(["dataset", "budget"], sort=False).p
    result["p_holm"] = families.transform(lambda p: holm(p.to_numpy()))
    result["significant"] = result.p_holm < alpha
    result["faithful"] = result.significant & (result["diff"] * result.direction > 0)
    result["mde"] = _detectable(result.sd, result.queries, families.transform(lambda p: holm_levels(p.to_numpy(), alpha)))
    return result[columns]

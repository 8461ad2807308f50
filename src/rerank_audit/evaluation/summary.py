"""summary.md: one table of methods x (ranking, explainability) per dataset and budget, with findings.

Every number and every sentence is generated from the statistics (``compare_methods``) and
the per-query explainability table (``explain_per_query``); nothing is typed by hand.

One module past 400 lines, on purpose: summary.md is one document, and its table, legend and
findings share the wording helpers (``_undecided``: every "not significant" with the effect it
could have detected; ``_signed``, ``_names``) that keep each kind of sentence said one way.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.data import measures
from rerank_audit.methods import display_name, method as method_spec
from rerank_audit.evaluation.statistics import BASELINES, RATIONALE_COMPREHENSIVENESS, compare_with_random

RANKING_MEASURES = ("nDCG@10", "RR@10", "AP")
PRIMARY_MEASURE = "nDCG@10"
MISSING = "–"
BETTER, WORSE = "▲", "▼"  # against BM25
ABOVE_RANDOM, BELOW_RANDOM = "↑", "↓"  # against the random re-ordering
FAITHFUL, UNFAITHFUL = "◆", "◇"

# Explainability columns: (header, measure, measure shown after "vs" or None); "{k}" is the K.
EXPLAIN_COLUMNS = measures.summary_columns()


def _name(method: str) -> str:
    return display_name(method)


def _names(methods: Sequence[str]) -> str:
    return _join([_name(m) for m in methods])


def _join(texts: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def budget_label(budget: str, budget_sizes: Mapping[str, int] | None = None) -> str:
    """"no training" for budget "0"; otherwise the budget with its number of training queries."""
    if budget == UNTRAINED_BUDGET:
        return "no training (budget 0)"
    size = (budget_sizes or {}).get(budget)
    if size is not None and str(size) != budget:
        return f"budget {budget} ({size} training queries)"
    return f"budget {budget} training queries" if budget.isdigit() else f"budget {budget}"


def method_order(present: Sequence[str], methods: Sequence[str] | None = None) -> list[str]:
    """random order, bm25, then the methods in config order (``methods``), then any others."""
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
    if "random_significant" in row and _is_true(row["random_significant"]):
        mark += ABOVE_RANDOM if row["random_diff"] > 0 else BELOW_RANDOM
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
    primary_measures: Sequence[str] | None = None,
    k: int | None = None,
    budget_sizes: Mapping[str, int] | None = None,
    training: Sequence[Mapping] | None = None,
    selections: Sequence[Mapping] | None = None,
    verdict_auc: pd.DataFrame | None = None,
    digits: int = 3,
) -> str:
    """The report's summary.md: per dataset and budget a table, its legend and generated findings.

    ``stats``: ``compare_methods`` output for the ranking measures (bm25, random order and the
    untrained methods at budget "0" appear in every budget's table). ``explain``: the per-query explainability
    table (``explain_per_query``), or None; without it explainability means are taken from
    ``stats`` when it holds those measures, and the random-word tests are not made.
    ``methods``: config order of the methods (rows: random order, bm25, then this order).
    ``ranking_measures``: ranking columns (those in ``stats``). ``primary_measures``: the
    tested ones (default: those with a test in ``stats``); findings speak of the first. ``k``: the K of
    comprehensiveness / sufficiency (default: the smallest K present). ``budget_sizes``:
    budget -> number of training queries, for headings ("all" -> 240). ``training``: the
    training_fit.json records of the trained models (``training.fit.training_fit``), or None;
    given, a Training table closes the summary (``training_markdown``). ``selections``: the
    training_config.json records of models trained with ``train.selection`` (each with
    ``budget``), or None; given, a Model selection table follows (``selection_markdown``).
    ``verdict_auc``: ``evaluation.verdict.verdict_auc`` rows, or None; given, the findings say
    what the writer's verdict tells about each method's decision (``verdict_auc_findings``).
    """
    explain_means = _explain_means(explain, stats)
    if primary_measures is None:
        tested = stats[[c for c in stats.columns if c.endswith("_p")]].notna().any(axis=1) if len(stats) else pd.Series(dtype=bool)
        primary_measures = [m for m in ranking_measures if m in set(stats.measure[tested])]
    primary = primary_measures[0] if primary_measures else PRIMARY_MEASURE
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
            sections.append(_legend(stats, dataset, budget, k, random_tested, bool(_explain_columns(means, k)), primary_measures))
            verdict = [] if verdict_auc is None else verdict_auc_findings(_rows_for(verdict_auc, dataset, budget), order)
            sections.append("**Findings.** " + " ".join([_findings(rows, means, tests, order, k, primary), *verdict]) + "\n")
    if training:
        sections.append(training_markdown(training, methods=methods, budget_sizes=budget_sizes, digits=digits))
    if selections:
        sections.append(selection_markdown(selections, methods=methods, budget_sizes=budget_sizes, digits=digits))
    return "\n".join(sections)


def training_markdown(
    fits: Sequence[Mapping], *, methods: Sequence[str] | None = None, budget_sizes: Mapping[str, int] | None = None, digits: int = 3
) -> str:
    """Did each trained model learn its training pairs? One row per record of ``training.fit.training_fit``.

    Columns: method, budget, steps, training loss first → last, pairs, accuracy on the
    training pairs vs the untrained model's on the same pairs (None: –, its note in the legend).
    Rows in ``methods`` order, then by budget as given.
    """
    order = method_order([fit["method"] for fit in fits], methods)
    rows = sorted(fits, key=lambda fit: order.index(fit["method"]))
    datasets = ", ".join(dict.fromkeys(fit["dataset"] for fit in rows if fit.get("dataset")))
    lines = [
        f"## Training{f' — models trained on {datasets}' if datasets else ''}\n",
        "| method | budget | steps | training loss first → last | training pairs | pair accuracy vs untrained (↑) |",
        "|---|---|---:|:---:|---:|:---:|",
    ]
    notes = {}
    for fit in rows:
        loss = f"{_number(fit.get('loss_first'), digits)} → {_number(fit.get('loss_last'), digits)}"
        accuracy = f"{_number(fit.get('accuracy'), digits)} vs {_number(fit.get('base_accuracy'), digits)}"
        cells = [_name(fit["method"]), budget_label(str(fit["budget"]), budget_sizes), _number(fit.get("steps"), 0), loss, str(fit.get("pairs", 0)), accuracy]
        lines.append("| " + " | ".join(cells) + " |")
        for key in ("note", "base_note"):
            if fit.get(key):
                notes.setdefault(fit[key], []).append(_name(fit["method"]))
    legend = (
        "> *Pair accuracy*: share of the method's own training pairs (a relevant document over a non-relevant one for the"
        " same query: its document pairs, for sft and dpo every such pair of its labelled examples, for qlm_lce each group's"
        " relevant document over each of its negatives) that its scorer"
        " orders correctly, ties ½; *vs*: the untrained model of the same scoring family on the same pairs. 0.5 is chance."
    )
    legend += "".join(f"\n>\n> {_names(list(dict.fromkeys(names)))}: {note}." for note, names in notes.items())
    return "\n".join(lines) + "\n\n" + legend + "\n"


def selection_markdown(
    records: Sequence[Mapping], *, methods: Sequence[str] | None = None, budget_sizes: Mapping[str, int] | None = None, digits: int = 3
) -> str:
    """Which checkpoint went to test, and did any trained step beat the untrained model on dev?

    ``records``: ``training_config.json`` of each model trained with ``train.selection`` (dicts
    with ``method``, ``budget`` and ``selection`` as ``training.selection.selection_record``
    writes it); records without ``selection`` are skipped. One row per model: the dev value of
    the untrained model (step 0), per learning rate its best dev value and step and its last
    one (rise then fall shows there), the chosen (learning rate, step) and its dev gain over
    step 0. A closing sentence names the methods for which dev kept the untrained model.
    """
    selected = [record for record in records if record.get("selection")]
    if not selected:
        return ""
    order = method_order([record["method"] for record in selected], methods)
    selected = sorted(selected, key=lambda record: order.index(record["method"]))
    first = selected[0]["selection"]
    lines = [
        f"## Model selection — dev {first['measure']} on {first['dev_queries']} dev queries\n",
        "| method | budget | untrained (step 0) | per learning rate: best @ step, last @ step | chosen → test | dev gain over step 0 |",
        "|---|---|:---:|---|---|:---:|",
    ]
    kept, unranked, edges = [], [], []
    for record in selected:
        selection = record["selection"]
        choice, curve = selection["choice"], pd.DataFrame(selection["dev_curve"])
        ranks = method_spec(record["method"]).untrained_ranks
        runs = []
        for rate, run in curve[curve.step > 0].groupby("learning_rate", sort=True):
            best = run.loc[run.value.idxmax()]  # idxmax: the first (earliest) of equal values
            last = run.loc[run.step.idxmax()]
            runs.append(f"{rate:g}: {best.value:.{digits}f} @ {int(best.step)}, {last.value:.{digits}f} @ {int(last.step)}")
        if choice["trained"]:
            chosen = f"lr {choice['learning_rate']:g}, step {choice['step']}"
            # The best at the grid's edge (its highest rate, its run's last step): a wider grid might do better.
            edge = [label for label, at_edge in (
                ("highest learning rate", choice["learning_rate"] == max(selection["grid"]["learning_rates"])),
                ("last step", choice["step"] == curve.step[curve.learning_rate == choice["learning_rate"]].max()),
            ) if at_edge]  # fmt: skip
            if edge:
                chosen += f" (grid edge: {' and '.join(edge)})"
                edges.append(record["method"])
        else:
            chosen = "untrained (step 0)"
            kept.append(record["method"])
        if ranks:
            untrained, gain = _number(choice["untrained_value"], digits), f"{choice['value'] - choice['untrained_value']:+.{digits}f}"
        else:
            untrained, gain = MISSING, MISSING
            unranked.append(record["method"])
        cells = [_name(record["method"]), budget_label(str(record.get("budget", "all")), budget_sizes), untrained, "; ".join(runs), chosen, gain]
        lines.append("| " + " | ".join(cells) + " |")
    grid = first["grid"]
    legend = (
        f"> Every method trained at learning rates {', '.join(f'{rate:g}' for rate in grid['learning_rates'])} for"
        f" {grid['epochs']:g} epoch(s), its dev {first['measure']} measured every {grid['eval_steps']} optimizer steps, at"
        " the last step and at step 0 (the untrained model), on the dev queries' judged documents; the highest dev value"
        " went to test (ties: the earliest step, then the smallest learning rate). No test query is read."
    )
    if unranked:
        legend += (f"\n>\n> {_names(unranked)}: the untrained model ranks nothing (tied scores, or a reward head not yet trained), so step 0 cannot be chosen"
                   " and the best trained step goes to test.")  # fmt: skip
    sentence = (f"Dev selection kept the untrained model for {_names(kept)}." if kept
                else "Dev selection chose a trained checkpoint for every method.")
    if edges:
        sentence += f" The choice lies at the grid's edge for {_names(edges)}: a wider grid (higher rates, more epochs) might do better."
    return "\n".join(lines) + "\n\n" + legend + "\n\n" + sentence + "\n"


def _number(value, digits: int) -> str:
    """``value`` with ``digits`` decimals; MISSING for None or NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


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


def _legend(stats, dataset, budget, k, random_tested, explained: bool, primary_measures: Sequence[str] = ()) -> str:
    rows = _rows_for(stats, dataset, budget)
    level = float(stats.ci_level.iloc[0])
    alpha = float(stats.alpha.iloc[0])
    resamples = int(stats.resamples.iloc[0])
    p_columns = [c for c in rows.columns if c.endswith("_p")]
    family = {b: int(rows[rows.budget == b][p_columns].notna().to_numpy().sum()) for b in dict.fromkeys(rows.budget)}
    families = ", ".join(f"{n} tests at budget {b}" for b, n in family.items() if n)
    tested = ", ".join(primary_measures) or "none"
    parts = [
        f"*Ranking cells*: mean over the test queries (column *queries*) [{level:.0%} percentile bootstrap CI of the mean, "
        f"{resamples} resamples]. {BETTER} / {WORSE}: significantly better / worse than BM25; {ABOVE_RANDOM} / {BELOW_RANDOM}: "
        "significantly better / worse than the random order — two-sided paired t-tests on per-query values (queries aligned by query_id, inner join), "
        f"made on the primary measures only ({tested}); the other columns are not tested and carry no marker. "
        "Holm–Bonferroni correction over primary measures × methods × comparisons (vs random order, BM25 and, for trained "
        "methods, their untrained counterpart: the same scorer before training, named in the findings) at the same budget "
        f"({families or 'no tests'}), α = {alpha:g}. "
        "A difference that is not significant comes with *detectable*, the effect its test had 80% power to find at its "
        "Holm level (from the SD of the per-query differences), and, where report.equivalence_margin is set, whether two "
        "one-sided tests (TOST, Holm over the same family) show it *equivalent* to none within that margin; neither "
        "significant nor equivalent: the data cannot tell. "
        "Random order: each test query's re-ranked head (the candidates the methods re-order) shuffled, the measure "
        "averaged over seeded shuffles per query — the floor a re-ranker must beat. "
        "Random order, BM25 and the untrained methods (budget 0) are shared by every budget.",
    ]
    if explained:
        text = (
            "*Explainability cells*: mean over explained documents (the top and the bottom documents of each method's"
            " re-ranked head), averaged per query, then over queries."
        )
        if k is not None:
            text += (
                f" compr.@{k} / suff.@{k}: score drop when the top-{k} attributed words are removed / kept alone, in units of"
                f" the method's score spread over the query's candidates, followed by the same with {k} random words."
            )
        if k is not None and random_tested:
            text += (
                f" {FAITHFUL} / {UNFAITHFUL}: the attribution is significantly more / less faithful than {k} random words,"
                " and in the rationale column, removing the words the rationale gives as reasons drops the score"
                " significantly more / less than removing as many random words; in the simulatability columns, the"
                " attributions predict held-out word removals significantly better / worse than when permuted (paired"
                f" t-tests per method, Holm over methods × {{{_tested_measures()}}} at the same budget, α = {alpha:g})."
            )
        text += (
            " Simulatability: Spearman correlation between the score changes of held-out random word removals (and,"
            " on a known-answer control, the marker's) and what the attributions predict for them (minus the removed"
            " words' summed attributions); sign agreement: the share of those edits whose change has the predicted"
            " sign; each vs the same with the pair's attributions permuted."
            " Lexical shortcut: share of positive attribution on document words that also occur in the query, vs its"
            " baseline, the share of the document's words that occur in the query (what evenly spread attribution"
            " gets); lexical excess = shortcut − baseline (> 0: attribution favours query words beyond their share)."
            " Keyword coverage, verdict agreement and unsupported words check the written rationale; verdict agreement"
            " compares the rationale's verdict with the method's decision (upper half of its head: relevant), overall"
            " and for top- vs bottom-explained documents."
        )
        parts += [text, f"{MISSING}: not available (BM25 has no attributions or rationales)."]
    return "\n>\n".join(f"> {p}" for p in parts) + "\n"


def _tested_measures() -> str:
    """The measures tested against their baselines, as the legend names them ("rationale comprehensiveness", ...)."""
    return ", ".join(m.name.replace("_", " ") for m in measures.MEASURES if m.direction)


def _signed(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.3f}" for v in values)


def _findings(rows, means, tests, order, k, measure: str = PRIMARY_MEASURE) -> str:
    sentences = []
    primary = rows[(rows.measure == measure) & ~rows.method.isin(["bm25", "random"])] if "bm25_significant" in rows else rows.iloc[0:0]
    primary = primary.set_index("method").reindex([m for m in order if m in set(primary.method)])
    if not primary.empty and primary.bm25_p.notna().any():
        significant = primary.bm25_significant.fillna(False).astype(bool)
        better = primary[significant & (primary.bm25_diff > 0)]
        worse = primary[significant & (primary.bm25_diff < 0)]
        neither = primary[~significant & primary.bm25_p.notna()]
        if len(better):
            sentences.append(
                f"{_names(better.index)} rank{'s' if len(better) == 1 else ''} significantly better than BM25 on {measure} "
                f"(mean per-query difference {_signed(better.bm25_diff)})."
            )
        else:
            sentences.append(f"No method ranks significantly better than BM25 on {measure}.")
        if len(worse):
            verb = "ranks" if len(worse) == 1 else "rank"
            sentences.append(f"{_names(worse.index)} {verb} significantly worse ({_signed(worse.bm25_diff)}).")
        if len(neither):
            sentences.append(f"The difference is not significant for {_undecided(neither, 'bm25')}.")
        trained = primary[primary.untrained_p.notna()] if "untrained_p" in primary else primary.iloc[0:0]
        if len(trained):
            significant = trained.untrained_significant.fillna(False).astype(bool)
            gain, loss = trained[significant & (trained.untrained_diff > 0)], trained[significant & (trained.untrained_diff < 0)]
            same = trained[~significant]

            def against(frame):
                return _names([f"{_name(m)} (vs {_name(r)}, {d:+.3f})" for m, r, d in zip(frame.index, frame.untrained_method, frame.untrained_diff)])

            text = "Against its untrained counterpart (the same scorer before training), training "
            text += f"significantly improved {measure} for {against(gain)}" if len(gain) else f"improved {measure} significantly for no method"
            text += f" and significantly lowered it for {against(loss)}." if len(loss) else "."
            if len(same):
                text += f" No significant change for {_undecided(same, 'untrained')}."
            sentences.append(text)
    sentences += _random_findings(rows, order, measure)
    if tests is not None and k is not None:
        comprehensive = tests[tests.measure == f"comprehensiveness@{k}"]
        if len(comprehensive):
            effect = f"removing the top-{k} attributed words lowers the score significantly more than removing {k} random words"
            sentences.append(_beats_random(comprehensive, order, effect))
        stated = tests[tests.measure == RATIONALE_COMPREHENSIVENESS]
        if len(stated):
            effect = "removing the words the rationale gives as reasons lowers the score significantly more than removing as many random words"
            sentences.append(_beats_random(stated, order, effect))
    simulated = tests[tests.measure == "simulatability"] if tests is not None else ()
    if len(simulated):
        effect = "the attributions predict the score changes of held-out word removals significantly better than the same attributions permuted"
        sentences.append(_beats_random(simulated, order, effect))
    sentences += _accuracy_vs_faithfulness_findings(rows, means, order, k, measure)
    sentences += _lexical_findings(means) + _verdict_findings(means, order)
    return " ".join(sentences) if sentences else "Not enough data for findings."


def _undecided(rows: pd.DataFrame, comparison: str) -> str:
    """Methods (the index of ``rows``, compare_methods rows) whose ``comparison`` found no
    significant difference, each with its difference, the effect the test could have found
    (80% power at its Holm level) and, where tested, whether TOST shows it equivalent."""
    described = []
    for method, row in rows.iterrows():
        against = f"vs {_name(row.untrained_method)}, " if comparison == "untrained" else ""
        text = f"{_name(method)} ({against}{row[f'{comparison}_diff']:+.3f}; detectable: ±{row[f'{comparison}_mde']:.3f}"
        if pd.notna(row.get(f"{comparison}_tost_p_holm", np.nan)):
            text += "; equivalent by TOST" if _is_true(row[f"{comparison}_equivalent"]) else "; not shown equivalent"
        described.append(text + ")")
    return _join(described)


def _beats_random(tests: pd.DataFrame, order, effect: str) -> str:
    """One finding over a measure's tests against random words: the methods where it holds, and
    the rest, each with the difference its test could have found (80% power at its Holm level)."""
    beat = [m for m in order if m in set(tests[tests.faithful].method)]
    rest = tests.set_index("method").reindex([m for m in order if m in set(tests.method) and m not in beat])
    detectable = _join([f"{_name(m)} ±{mde:.2f}" for m, mde in rest.mde.items()]) if len(rest) else ""
    if not beat:
        return f"For no method, {effect} (differences it could have detected at 80% power: {detectable})."
    return f"For {_names(beat)}, {effect}" + (f"; not for {_names(list(rest.index))} (detectable: {detectable})." if len(rest) else ".")


def _lexical_findings(means) -> list[str]:
    """Which method's attribution exceeds its lexical baseline most."""
    by_method = means.pivot_table(index="method", columns="measure", values="mean", aggfunc="first")
    if not {"lexical_excess", "lexical_shortcut", "lexical_baseline"} <= set(by_method.columns):
        return []
    excess = by_method.lexical_excess.dropna()
    if len(excess) < 2:
        return []
    top = by_method.loc[excess.idxmax()]
    return [
        f"The lexical-shortcut index exceeds its baseline most for {_name(excess.idxmax())} ({top.lexical_excess:+.2f}: "
        f"{top.lexical_shortcut:.2f} of its positive attribution on words shared with the query, whose words make up "
        f"{top.lexical_baseline:.2f} of the documents)."
    ]


def _verdict_findings(means, order) -> list[str]:
    """Verdict agreement for top- vs bottom-explained documents, per method."""
    by_method = means.pivot_table(index="method", columns="measure", values="mean", aggfunc="first")
    if not {"verdict_agreement_top", "verdict_agreement_bottom"} <= set(by_method.columns):
        return []
    both = by_method[["verdict_agreement_top", "verdict_agreement_bottom"]].dropna()
    pairs = [f"{_name(m)} {both.loc[m].verdict_agreement_top:.2f} vs {both.loc[m].verdict_agreement_bottom:.2f}" for m in order if m in both.index]
    if not pairs:
        return []
    return [
        "Verdict agreement (rationale vs the method's decision), top- vs bottom-explained documents: " + "; ".join(pairs) + "."
    ]


def verdict_auc_findings(auc: pd.DataFrame, order) -> list[str]:
    """The writer's verdict AUC per method with and without the explanation and their difference with
    its CI (``evaluation.verdict`` rows of one table: the CI says what a null could have found),
    and for which methods the explanation adds to the input alone (CI of the difference above 0)."""
    auc = auc.dropna(subset=["auc"]).set_index("method")
    methods = [m for m in order if m in auc.index]
    if not methods:
        return []
    level = f"{float(auc.ci_level.iloc[0]):.0%}"
    values = "; ".join(
        f"{_name(m)} {auc.auc[m]:.2f} vs {auc.auc_input_only[m]:.2f} (added {auc.added[m]:+.2f} [{auc.added_ci_low[m]:+.2f}, {auc.added_ci_high[m]:+.2f}])"
        for m in methods
    )
    added = [m for m in methods if auc.added_ci_low[m] > 0]
    lost = [m for m in methods if auc.added_ci_high[m] < 0]
    text = (
        "The rationale writer's verdict, read as its log-odds of \"relevant\", predicts each method's decision (top vs bottom "
        f"of its head) with AUC, with the explanation vs from the query and document alone: {values}. "
    )
    if added:
        text += f"The explanation adds to the input alone for {_names(added)} ({level} CI of the difference above 0)"
    else:
        text += f"For no method does the explanation add to what the input alone tells ({level} CI of the difference above 0)"
    text += f"; it lowers the AUC for {_names(lost)}." if lost else "."
    return [text]


def _random_findings(rows, order, measure) -> list[str]:
    """Which methods (BM25 included) fail to beat a random order of their own candidates on ``measure``."""
    if "random_p" not in rows:
        return []
    tested = rows[(rows.measure == measure) & rows.random_p.notna()].set_index("method")
    tested = tested.reindex([m for m in order if m in set(tested.index)])
    if tested.empty:
        return []
    beaten = tested.random_significant.fillna(False).astype(bool) & (tested.random_diff > 0)
    if beaten.all():
        return [f"Every method, BM25 included, ranks significantly better than a random order of the same candidates on {measure}."]
    rest = tested[~beaten]
    verb = "does" if len(rest) == 1 else "do"
    return [f"{_names(rest.index)} {verb} not rank significantly better than a random order of the same candidates on {measure}: {_undecided(rest, 'random')}."]


def _accuracy_vs_faithfulness_findings(rows, means, order, k, primary: str = PRIMARY_MEASURE) -> list[str]:
    """Did better ranking come with higher comprehensiveness? Compared across the methods of one table."""
    if k is None:
        return []
    measure = f"comprehensiveness@{k}"
    accuracy = rows[rows.measure == primary].set_index("method")["mean"]
    faithfulness = means[means.measure == measure].set_index("method")["mean"].dropna()
    both = [m for m in order if m in accuracy.index and m in faithfulness.index]
    if len(both) < 2:
        return []
    alpha = float(rows.alpha.iloc[0]) if "alpha" in rows and len(rows) else 0.05
    # The table's best method (statistics.compare_methods): the highest mean, significantly above every other row.
    tops = rows[(rows.measure == primary) & (rows.get("top_p_holm", pd.Series(np.nan, index=rows.index)) < alpha)]
    top = tops.top_method.iloc[0] if len(tops) else None
    accuracy, faithfulness = accuracy[both], faithfulness[both]
    most = faithfulness.idxmax()
    if top is None:
        text = (
            f"No method ranks significantly above every other on {primary} (paired t-tests of the highest mean against "
            f"each other method, Holm, α = {alpha:g}), so no best-ranking method is named; the highest {measure} is "
            f"{_name(most)}'s ({faithfulness[most]:.3f}, {primary} {accuracy[most]:.3f})."
        )
    elif top not in both:
        text = (
            f"{_name(top)} ranks significantly above every other method on {primary}, but it has no attributions; among the "
            f"explained methods the highest {measure} is {_name(most)}'s ({faithfulness[most]:.3f}, {primary} {accuracy[most]:.3f})."
        )
    elif top == most:
        text = (
            f"Better ranking came with more faithful attributions at the top: the best-ranking method, {_name(top)} "
            f"({primary} {accuracy[top]:.3f}, significantly above every other method), also has the highest {measure} ({faithfulness[top]:.3f})."
        )
    else:
        text = (
            f"Better ranking did not come with the most faithful attributions: the best-ranking method, {_name(top)} "
            f"({primary} {accuracy[top]:.3f}, significantly above every other method), has {measure} {faithfulness[top]:.3f}, below {_name(most)} "
            f"({faithfulness[most]:.3f}, {primary} {accuracy[most]:.3f})."
        )
    sentences = [text]
    if len(both) >= 3 and accuracy.nunique() > 1 and faithfulness.nunique() > 1:
        rho = scipy_stats.spearmanr(accuracy.to_numpy(), faithfulness.to_numpy()).statistic
        sentences.append(
            f"Across the {len(both)} explained methods, Spearman's ρ between mean {primary} and mean {measure} is "
            f"{rho:+.2f} (descriptive: {len(both)} methods are too few for a test)."
        )
    return sentences


def _is_true(value) -> bool:
    return value is True or (value is not pd.NA and not (isinstance(value, float) and np.isnan(value)) and bool(value))

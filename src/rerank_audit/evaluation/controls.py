"""What the audit reports on a known-answer control (data/control.py), per method and budget.

- took the shortcut: aligned − flipped of each primary measure over the test queries
  (paired t-test, Holm over methods x budgets x measures); a significant negative
  difference is reported too: the method uses the marker, reversed (marker = non-relevant);
- the attributions show it: share of the explained marker-carrying documents whose top-1
  (and top-K) word by attribution (signed: the words that raised the score most) is the
  marker, against the chance share 1/(words of the pair) (one-sided binomial test), and the
  comprehensiveness of the marker alone (normalised score drop when only the marker is
  removed) against removing one random word (paired t-test over those documents);
- the rationale says it: share of those documents' rationales that name the marker, when
  it is the top-1 word (one-sided binomial test against one half: "most rationales"), with
  the rationale comprehensiveness of those documents (removing the words the rationale gives
  as reasons) against as many random words (paired t-test);
- the attributions predict removals: counterfactual simulatability (explain/simulatability.py;
  its edits include removing the marker) over those documents against the same attributions
  permuted (paired t-test), and each trained method's against each untrained method's on the
  same edits: a document both explain gets the same edits (drawn from its text), so the test
  is paired over the documents both explained, where at least ``MIN_SHARED`` are; otherwise
  Welch's t-test over each one's documents (each method explains its own top and bottom
  documents; explaining every head document, ``explain.top_documents`` = ``rerank.depth``,
  makes them all shared). Holm over the comparisons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from rerank_audit.evaluation import plots
from rerank_audit.evaluation.statistics import TEST_SPLIT, holm, paired_t_test
from rerank_audit.evaluation.summary import method_order
from rerank_audit.methods import display_name
from rerank_audit.text.words import split_words, word_key

KEYS = ["method", "budget"]
SUMMARY_COLUMNS = [
    *KEYS, "explained", "top1", "top1_share", "topk_share", "chance", "p_attribution", "rationales", "named", "named_share", "p_rationale",
    "marker_comprehensiveness", "marker_comprehensiveness_random", "p_marker_comprehensiveness",
    "rationale_comprehensiveness", "rationale_comprehensiveness_random", "p_rationale_comprehensiveness",
    "simulatability", "simulatability_random", "p_simulatability",
]
# Per-pair faithfulness of the explained pairs (explain/faithfulness.py): each against its random baseline.
PAIR_FAITHFULNESS = ["marker_comprehensiveness", "rationale_comprehensiveness", "simulatability"]
BETWEEN_COLUMNS = [
    "method", "budget", "against", "documents", "documents_against", "shared", "test", "mean", "mean_against", "difference", "t", "p", "p_holm",
]  # fmt: skip
MIN_SHARED = 3  # documents both methods explained: fewer, and the comparison falls back to Welch's test over each one's


def shortcut_tests(aligned: pd.DataFrame, flipped: pd.DataFrame, measures: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Aligned − flipped per method x budget x measure over the test queries both versions share.

    ``aligned``, ``flipped``: per-query metrics (PER_QUERY_METRICS) of the two versions.
    Returns (method, budget, measure, aligned, flipped, difference, queries, t, p, p_holm,
    took_shortcut, reversed): means over the shared test queries, the paired t-test and its
    Holm adjustment over every row; took_shortcut = difference > 0 and p_holm < ``alpha``;
    reversed = difference < 0 and p_holm < ``alpha`` (the method learned marker = non-relevant).
    """
    columns = [*KEYS, "query_id", "measure", "value"]
    pick = lambda frame: frame.loc[(frame.split == TEST_SPLIT) & frame.measure.isin(measures), columns]  # noqa: E731
    paired = pick(aligned).merge(pick(flipped), on=[*KEYS, "query_id", "measure"], suffixes=("_aligned", "_flipped"))
    rows = []
    for (method, budget, measure), group in paired.groupby([*KEYS, "measure"], sort=False):
        t, p = paired_t_test(group.value_aligned.to_numpy(), group.value_flipped.to_numpy())
        rows.append(
            {
                "method": method, "budget": budget, "measure": measure,
                "aligned": group.value_aligned.mean(), "flipped": group.value_flipped.mean(),
                "difference": (group.value_aligned - group.value_flipped).mean(), "queries": len(group), "t": t, "p": p,
            }
        )
    table = pd.DataFrame(rows, columns=[*KEYS, "measure", "aligned", "flipped", "difference", "queries", "t", "p"])
    table["p_holm"] = holm(table.p.to_numpy()) if len(table) else []
    table["took_shortcut"] = (table.difference > 0) & (table.p_holm < alpha)
    table["reversed"] = (table.difference < 0) & (table.p_holm < alpha)
    return table


def marker_attribution(attributions: pd.DataFrame, placement: pd.DataFrame, marker: str, k: int) -> pd.DataFrame:
    """Per explained pair whose document carries the marker: is the marker its top-1 / top-``k`` word?

    ``attributions``: ATTRIBUTIONS rows of one or more methods; ``placement``: the control's
    CONTROL_PLACEMENT. Words of query and document are ranked by attribution, highest first
    (ties by part then position). Returns (method, budget, query_id, doc_id, words, top1, topk,
    chance, marker_share): chance = 1 / words, the top-1 share of a word drawn at random;
    marker_share: the marker's positive attribution over all positive attribution on the
    document's words (NaN when none is positive).
    """
    carriers = set(placement.doc_id[placement.marker])
    frame = attributions[attributions.doc_id.isin(carriers)]
    key = word_key(marker)
    rows = []
    for (method, budget, query_id, doc_id), pair in frame.groupby([*KEYS, "query_id", "doc_id"], sort=False):
        ranked = pair.sort_values(["attribution", "part", "position"], ascending=[False, True, True])
        in_document = (ranked.part == "document").to_numpy()
        is_marker = in_document & np.array([word_key(t) == key for t in ranked.token])
        positive = np.clip(ranked.attribution.to_numpy(dtype=np.float64), 0, None)
        total = positive[in_document].sum()
        rows.append(
            {
                "method": method, "budget": budget, "query_id": query_id, "doc_id": doc_id, "words": len(ranked),
                "top1": bool(is_marker[:1].any()), "topk": bool(is_marker[:k].any()), "chance": 1.0 / len(ranked),
                "marker_share": positive[is_marker].sum() / total if total > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=[*KEYS, "query_id", "doc_id", "words", "top1", "topk", "chance", "marker_share"])


def names_marker(rationale: str, marker: str) -> bool:
    """Whether ``rationale`` has a word with the marker's key."""
    key = word_key(marker)
    return any(word_key(word) == key for word in split_words(rationale or ""))


def pair_faithfulness(faithfulness: pd.DataFrame, rationale_metrics: pd.DataFrame) -> pd.DataFrame:
    """Per explained pair: ``PAIR_FAITHFULNESS`` and their ``_random`` baselines, in one row.

    ``faithfulness``: FAITHFULNESS rows (one per pair and K; the marker columns repeat over
    K); ``rationale_metrics``: RATIONALE_METRICS rows. Pairs missing from one table get NaN.
    """
    pair = [*KEYS, "query_id", "doc_id"]
    per_pair = ["marker_comprehensiveness", "marker_comprehensiveness_random", "simulatability", "simulatability_random"]
    marker = faithfulness.drop_duplicates(pair)[[*pair, *per_pair]]
    stated = rationale_metrics[[*pair, "rationale_comprehensiveness", "rationale_comprehensiveness_random"]]
    return marker.merge(stated, on=pair, how="outer")


def _against_random(group: pd.DataFrame, measure: str) -> dict:
    """Mean of ``measure`` and of its ``_random`` baseline over the group's pairs that have both, and the paired t-test's p."""
    both = group[[measure, f"{measure}_random"]].dropna() if measure in group else pd.DataFrame(columns=[measure, f"{measure}_random"])
    _, p = paired_t_test(both[measure].to_numpy(), both[f"{measure}_random"].to_numpy())
    return {measure: both[measure].mean(), f"{measure}_random": both[f"{measure}_random"].mean(), f"p_{measure}": p}


def attribution_summary(pairs: pd.DataFrame, rationales: pd.DataFrame, marker: str, faithful: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method x budget: the attribution and rationale shares of ``marker_attribution`` pairs with their tests.

    ``rationales``: RATIONALES rows (method, budget, query_id, doc_id, rationale);
    ``faithful``: ``pair_faithfulness`` rows (None: those columns NaN). Returns
    ``SUMMARY_COLUMNS``: explained pairs, top-1 hits and shares, the chance share and the
    binomial p, then rationales (top-1 pairs with one), named, named_share, p_rationale; named
    counts the top-1 pairs whose rationale names the marker (NaN shares where there is nothing
    to count); then over the explained marker-carrying pairs the mean marker comprehensiveness
    and rationale comprehensiveness, each with its random baseline and paired t-test p.
    """
    said = rationales.assign(named=[names_marker(r, marker) for r in rationales.rationale])[[*KEYS, "query_id", "doc_id", "named"]]
    pairs = pairs.merge(said, on=[*KEYS, "query_id", "doc_id"], how="left")
    if faithful is not None:
        pairs = pairs.merge(faithful, on=[*KEYS, "query_id", "doc_id"], how="left")
    rows = []
    for (method, budget), group in pairs.groupby(KEYS, sort=False):
        n, hits, chance = len(group), int(group.top1.sum()), float(group.chance.mean())
        top = group[group.top1 & group.named.notna()]
        named = int(top.named.astype(bool).sum())
        rows.append(
            {
                "method": method, "budget": budget, "explained": n, "top1": hits, "top1_share": hits / n,
                "topk_share": float(group.topk.mean()), "chance": chance,
                "p_attribution": scipy_stats.binomtest(hits, n, chance, alternative="greater").pvalue,
                "rationales": len(top), "named": named, "named_share": named / len(top) if len(top) else float("nan"),
                "p_rationale": scipy_stats.binomtest(named, len(top), 0.5, alternative="greater").pvalue if len(top) else float("nan"),
                **{key: value for measure in PAIR_FAITHFULNESS for key, value in _against_random(group, measure).items()},
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def simulatability_between(pairs: pd.DataFrame, untrained: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Each trained method's simulatability on its explained marker-carrying documents against each
    ``untrained`` method's: ``pairs`` rows (``attribution_summary``'s merged pairs: method,
    budget, query_id, doc_id, simulatability) with a defined simulatability. Paired t-test over
    the documents both explained (the same edits) where at least ``MIN_SHARED`` are (test
    "paired": mean, mean_against and difference over those), else Welch's t-test over each
    one's documents (test "welch"); two-sided, Holm over every row. Returns ``BETWEEN_COLUMNS``."""
    defined = pairs.dropna(subset=["simulatability"]) if "simulatability" in pairs else pairs.iloc[0:0]
    groups = {key: group.set_index(["query_id", "doc_id"]).simulatability.astype(np.float64) for key, group in defined.groupby(KEYS, sort=False)}
    rows = []
    for (method, budget), values in groups.items():
        for (against, _), reference in groups.items():
            if method in untrained or against not in untrained:
                continue
            shared = values.index.intersection(reference.index)
            if len(shared) >= MIN_SHARED:
                test, a, b = "paired", values[shared].to_numpy(), reference[shared].to_numpy()
                t, p = paired_t_test(a, b)
            else:
                test, a, b = "welch", values.to_numpy(), reference.to_numpy()
                t, p = scipy_stats.ttest_ind(a, b, equal_var=False) if min(len(a), len(b)) >= 2 else (np.nan, np.nan)
            rows.append(
                {
                    "method": method, "budget": budget, "against": against, "documents": len(values), "documents_against": len(reference),
                    "shared": len(shared), "test": test, "mean": a.mean(), "mean_against": b.mean(), "difference": a.mean() - b.mean(),
                    "t": float(t), "p": float(p),
                }  # fmt: skip
            )
    table = pd.DataFrame(rows, columns=BETWEEN_COLUMNS[:-1])
    table["p_holm"] = holm(table.p.to_numpy()) if len(table) else []
    return table


def between_markdown(table: pd.DataFrame, alpha: float) -> str:
    """The section of the control summary on ``simulatability_between``."""
    if table.empty:
        return ""
    lines = [
        "## Do the attributions predict removals? Simulatability against the untrained methods'",
        "",
        "Over the explained marker-carrying documents (the marker's removal among the edits): paired t-test over the "
        f"documents both methods explained, which get the same edits (at least {MIN_SHARED}), else Welch's t-test over "
        "each one's documents; Holm over the rows. Documents: each one's explained (shared).",
        "",
        "| method | budget | against | documents | test | simulatability | against's | difference | Holm p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        higher = " (higher)" if row.p_holm < alpha and row.difference > 0 else " (lower)" if row.p_holm < alpha else ""
        lines.append(
            f"| {display_name(row.method)} | {row.budget} | {display_name(row.against)} | {row.documents}, {row.documents_against} "
            f"({row.shared}) | {row.test} | {row.mean:+.2f} | {row.mean_against:+.2f} | {row.difference:+.2f}{higher} | {row.p_holm:.3g} |"
        )
    return "\n".join(lines) + "\n"


def control_table(shortcut: pd.DataFrame, attribution: pd.DataFrame) -> pd.DataFrame:
    """``shortcut_tests`` rows with the ``attribution_summary`` columns of their method and budget (NaN where none)."""
    return shortcut.merge(attribution, on=KEYS, how="left")


def _share(count, total) -> str:
    return "–" if pd.isna(total) or not total else f"{count:.0f}/{total:.0f} ({count / total:.0%})"


def control_markdown(table: pd.DataFrame, control: dict, name: str, flipped: str, measure: str, alpha: float, methods: Sequence[str] | None = None) -> str:
    """The control section: the table for ``measure`` (the first primary measure) and one finding per method."""
    rows = table[table.measure == measure].set_index("method")
    order = [m for m in method_order(rows.index.unique().tolist(), methods) if m in rows.index]
    lines = [
        f"# Known-answer control {name} (flipped: {flipped})",
        "",
        f"Marker {control['marker']!r} from dataset {control['source']!r}: training documents carry it in "
        f"{control['p_relevant']:.0%} of the relevant and {control['p_other']:.0%} of the others (seed {control['seed']}); "
        f"aligned test documents likewise, flipped ones only in {control['p_relevant']:.0%} of the non-relevant.",
        "",
        f"| method | budget | {measure} aligned | flipped | aligned − flipped | Holm p | marker top-1 word | marker in top-K | "
        "marker compr. vs random word | rationale names it | rationale compr. vs random words | simulatability vs permuted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    findings = []
    for method in order:
        for _, row in rows.loc[[method]].iterrows():
            label = display_name(method)
            lines.append(
                f"| {label} | {row.budget} | {row.aligned:.3f} | {row.flipped:.3f} | {row.difference:+.3f} | {row.p_holm:.3g} | "
                f"{_share(row.get('top1', np.nan), row.get('explained', np.nan))} | "
                f"{'–' if pd.isna(row.get('topk_share', np.nan)) else format(row.topk_share, '.0%')} | "
                f"{_versus(row, 'marker_comprehensiveness')} | "
                f"{_share(row.get('named', np.nan), row.get('rationales', np.nan))} | {_versus(row, 'rationale_comprehensiveness')} | "
                f"{_versus(row, 'simulatability')} |"
            )
            findings.append(f"- {label} (budget {row.budget}): " + "; ".join(_finding(row, measure, alpha)) + ".")
    legend = (
        "Comprehensiveness: the score drop when the marker alone (or the document words the rationale gives as reasons) "
        "is removed, in units of the method's score spread over the query's candidates, vs removing as many random words. "
        "Simulatability: Spearman ρ between the score changes the summed attributions predict and those measured, over "
        "random word removals and the marker's, vs the same attributions permuted within the document."
    )
    return "\n".join([*lines, "", legend, "", "## Findings", "", *findings, ""])


def _versus(row: pd.Series, measure: str) -> str:
    value = row.get(measure, np.nan)
    return "–" if pd.isna(value) else f"{value:.2f} vs {row[f'{measure}_random']:.2f}"


def _comprehensiveness(row: pd.Series, measure: str, what: str, baseline: str) -> str:
    """``what`` with its mean drop against the random baseline and the paired test, or "" when not measured."""
    if pd.isna(row.get(measure, np.nan)):
        return ""
    return f"; removing {what} drops the score by {row[measure]:.2f} vs {row[f'{measure}_random']:.2f} for {baseline} (paired t-test p = {row[f'p_{measure}']:.3g})"


def _finding(row: pd.Series, measure: str, alpha: float) -> list[str]:
    """The three findings of one method x budget row: took the shortcut / the attributions show it / the rationale says so."""
    if row.took_shortcut:
        took = "took the shortcut"
    elif row.get("reversed", False):
        took = "uses the marker (reversed: marker-carrying documents ranked lower)"
    else:
        took = "no evidence that it took the shortcut"
    parts = [f"{took} (aligned − flipped {measure} {row.difference:+.3f}, paired t-test over {row.queries} test queries, Holm p = {row.p_holm:.3g})"]
    if pd.notna(row.get("explained", np.nan)):
        shows = "the attributions show it" if row.p_attribution < alpha and row.top1_share > 0.5 else "the attributions do not show it"
        parts.append(
            f"{shows} (marker top-1 in {row.top1:.0f} of {row.explained:.0f} explained marker-carrying documents, "
            f"chance {row.chance:.1%}, binomial p = {row.p_attribution:.3g}"
            + _comprehensiveness(row, "marker_comprehensiveness", "the marker alone", "a random word") + ")"
        )
        if pd.notna(row.get("simulatability", np.nan)):
            predicts = "they predict removals" if row.p_simulatability < alpha and row.simulatability > row.simulatability_random else "they do not predict removals beyond chance"
            parts.append(
                f"{predicts} (simulatability {row.simulatability:+.2f} vs {row.simulatability_random:+.2f} permuted, "
                f"paired t-test p = {row.p_simulatability:.3g})"
            )
        stated = _comprehensiveness(row, "rationale_comprehensiveness", "the words the rationales give as reasons", "as many random words")
        if row.rationales:
            says = "the rationale says so" if row.p_rationale < alpha else "the rationale does not say so"
            parts.append(f"{says} (names the marker in {row.named:.0f} of {row.rationales:.0f} where it is top-1, binomial p vs 1/2 = {row.p_rationale:.3g}{stated})")
        else:
            parts.append(f"the rationale does not say so (the marker is top-1 in no explained document with a rationale{stated})")
    return parts


def aligned_vs_flipped(table: pd.DataFrame, path: str | Path, measure: str, methods: Sequence[str] | None = None) -> Figure:
    """Bars of aligned and flipped mean ``measure`` per method x budget, each labelled with its marker top-1 share."""
    rows = table[table.measure == measure].copy()
    rows["order"] = rows.method.map({m: i for i, m in enumerate(method_order(rows.method.unique().tolist(), methods))})
    rows = rows.sort_values(["order", "budget"]).reset_index(drop=True)
    colours = plots.method_colours(rows.method.unique().tolist())
    figure = Figure(figsize=(1.2 + 1.1 * len(rows), 3.6))
    axes = figure.add_subplot()
    x = np.arange(len(rows))
    for offset, version, hatch in ((-0.2, "aligned", None), (0.2, "flipped", "//")):
        axes.bar(x + offset, rows[version], width=0.38, color=[colours[m] for m in rows.method], hatch=hatch, edgecolor="white", label=version)
    for i, row in rows.iterrows():
        share = row.get("top1_share", np.nan)
        text = "marker top-1\n–" if pd.isna(share) else f"marker top-1\n{share:.0%}"
        axes.annotate(text, (i, max(row.aligned, row.flipped)), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7)
    axes.set_xticks(x, [f"{display_name(m)}\n{b}" for m, b in zip(rows.method, rows.budget)], fontsize=8)
    axes.set_ylabel(plots.measure_label(measure))
    axes.set_ylim(0, 1.25)
    axes.legend(loc="upper right", fontsize=8, ncols=2)
    axes.set_title("Aligned vs flipped test queries (plain: aligned, hatched: flipped)", fontsize=9)
    return plots._save(figure, path)

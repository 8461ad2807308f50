"""Report figures (PNG): learning curves, accuracy vs. faithfulness, per-query differences, an example page,
dev curves of model selection.

Figures are built on matplotlib's Agg canvas without pyplot (no global state, nothing to
close), written atomically, and returned so that callers and tests can inspect them.
Every method keeps one colour across figures (``method_colours``).

One module past 400 lines, on purpose: one short function per report figure, sharing the
method colours and the atomic PNG writer; a figure's code stays beside the others it matches.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import TwoSlopeNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.transforms import Bbox

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.statistics import BASELINES, TEST_SPLIT
from rerank_audit.evaluation.summary import method_order
from rerank_audit.data.measures import measure_of
from rerank_audit.methods import display_name, method as method_spec
from rerank_audit.io import atomic_path

DPI = 150
ATTRIBUTION_COLORMAP = "RdBu_r"  # diverging: red raises the score, blue lowers it, white ~ 0
REFERENCE_STYLES = {"bm25": {"color": "black", "linestyle": "--"}, "random": {"color": "0.55", "linestyle": "-."}}
UNTRAINED_LINESTYLE = ":"  # an untrained method's level, drawn across the budgets

# Axis label of a ranking measure: its name with its range (explainability measures carry their own unit).
RANKING_MEASURE = r"^(nDCG|RR|AP|P|R|Judged)\b"


def measure_label(measure: str) -> str:
    """``measure`` with its unit (on a second line when long), e.g. "nDCG@10 (0–1)"."""
    if re.match(RANKING_MEASURE, measure):
        return f"{measure} (0–1)"
    explained = measure_of(measure)
    return f"{measure} ({explained.unit})" if explained else measure


def method_colours(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per method: BM25 black, random order grey, the others tab10 in ``method_order``.

    More than 10 others (a study with fused rows has 11) take tab20, so no two share a colour.
    """
    colours = {m: to_rgba(REFERENCE_STYLES[m]["color"]) for m in methods if m in REFERENCE_STYLES}
    others = [m for m in method_order(methods) if m not in REFERENCE_STYLES]
    palette = matplotlib.colormaps["tab10" if len(others) <= 10 else "tab20"].colors
    return colours | {m: palette[i % len(palette)] for i, m in enumerate(others)}


def _name(method: str) -> str:
    return display_name(method)


def _save(figure: Figure, path: str | Path) -> Figure:
    """Write ``figure`` as PNG to ``path`` atomically (Agg canvas); return it."""
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return figure


def budget_positions(budgets: Sequence[str], budget_sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """x position (number of training queries) of each budget: its number, or ``budget_sizes[budget]`` ("all")."""
    positions = {}
    for budget in budgets:
        if budget_sizes and budget in budget_sizes:
            positions[budget] = int(budget_sizes[budget])
        elif budget.isdigit():
            positions[budget] = int(budget)
        else:
            raise ValueError(f"budget {budget!r} is not a number; pass its number of training queries in budget_sizes")
    return positions


def learning_curves(
    stats: pd.DataFrame,
    path: str | Path,
    measures: Sequence[str] = ("nDCG@10", "comprehensiveness@5"),
    budget_sizes: Mapping[str, int] | None = None,
    methods: Sequence[str] | None = None,
) -> Figure:
    """Mean (with CI band) of each measure against the number of training queries.

    ``stats``: ``compare_methods`` output (ranking and explainability rows may be
    concatenated). One panel per dataset x measure (measures missing from ``stats`` are
    skipped); one line per trained method (label: method name) over its budgets, placed at
    ``budget_positions`` (``budget_sizes`` maps e.g. "all" to its query count); bm25 and
    the untrained methods (budget "0") as horizontal reference lines with a light CI band. The x axis is
    logarithmic when budgets span more than a factor of 8. Returns the Figure.
    """
    measures = [m for m in measures if m in set(stats.measure)]
    if not measures:
        raise ValueError(f"none of the measures is in the statistics table (it has {sorted(set(stats.measure))})")
    datasets = list(dict.fromkeys(stats.dataset))
    trained_budgets = [b for b in dict.fromkeys(stats.budget) if b != UNTRAINED_BUDGET]
    positions = budget_positions(trained_budgets, budget_sizes)
    colours = method_colours(method_order(list(stats.method), methods))
    figure = Figure(figsize=(5.2 * len(measures) + 1.8, 3.8 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), len(measures), squeeze=False)
    span = max(positions.values()) / max(1, min(positions.values())) if positions else 1
    for row, dataset in enumerate(datasets):
        for column, measure in enumerate(measures):
            ax = axes[row, column]
            data = stats[(stats.dataset == dataset) & (stats.measure == measure)]
            trained = [m for m in method_order(list(data.method), methods) if m not in BASELINES]
            for method in method_order(list(data.method), methods):
                rows = data[data.method == method]
                if method in BASELINES or set(rows.budget) == {UNTRAINED_BUDGET}:
                    reference = rows.iloc[0]
                    style = REFERENCE_STYLES.get(method, {"color": colours[method], "linestyle": UNTRAINED_LINESTYLE})
                    ax.axhline(reference["mean"], linewidth=1.5, label=f"{_name(method)} (untrained)", **style)
                    ax.axhspan(reference.ci_low, reference.ci_high, color=style["color"], alpha=0.08, linewidth=0)
                    continue
                rows = rows.assign(x=rows.budget.map(positions)).sort_values("x")
                if len(positions) == 1:
                    # One budget: no band to draw; spread the methods a little so their CI bars stay apart.
                    rows = rows.assign(x=rows.x * (1 + 0.04 * (trained.index(method) - (len(trained) - 1) / 2)))
                    ax.errorbar(
                        rows.x, rows["mean"], yerr=[rows["mean"] - rows.ci_low, rows.ci_high - rows["mean"]],
                        fmt="none", ecolor=colours[method], capsize=4, elinewidth=1.5,
                    )  # fmt: skip
                ax.plot(rows.x, rows["mean"], marker="o", linewidth=2, color=colours[method], label=_name(method))
                ax.fill_between(rows.x, rows.ci_low, rows.ci_high, color=colours[method], alpha=0.15, linewidth=0)
            if span > 8:
                ax.set_xscale("log")
            ticks = sorted(positions.items(), key=lambda item: item[1])
            ax.set_xticks([x for _, x in ticks], [b if b.isdigit() else f"{b}\n({x})" for b, x in ticks])
            ax.minorticks_off()
            if len(positions) == 1:
                only = next(iter(positions.values()))
                ax.set_xlim(only * 0.85, only * 1.15)
            ax.set_xlabel("training queries (number" + (", log scale)" if span > 8 else ")"))
            ax.set_ylabel(measure_label(measure))
            ax.set_title(f"{dataset}: {measure} by training budget")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="outside right center", title="method")
    interval = "bars" if len(positions) == 1 else "band"
    figure.suptitle(f"Learning curves: mean over test queries, {interval} = {_ci_level(stats)} bootstrap CI")
    return _save(figure, path)


def _ci_level(stats: pd.DataFrame) -> str:
    return f"{float(stats.ci_level.iloc[0]):.0%}" if "ci_level" in stats and len(stats) else "CI"


def accuracy_vs_faithfulness(
    stats: pd.DataFrame,
    path: str | Path,
    accuracy: str = "nDCG@10",
    faithfulness: str = "comprehensiveness@5",
    budget_sizes: Mapping[str, int] | None = None,
    methods: Sequence[str] | None = None,
) -> Figure:
    """One point per method x budget: x = mean ``accuracy``, y = mean ``faithfulness`` (normalised), with CI bars.

    Points of one method are joined in budget order (thin line: how training moves it);
    each is labelled "method budget". A dotted line marks the mean of the random-words
    baseline (``<name>_random@k``) when ``stats`` has it, a dashed one BM25's ``accuracy``
    (BM25 has no attributions). One panel per dataset. Returns the Figure.
    """
    random_measure = re.sub(r"@", "_random@", faithfulness, count=1)
    datasets = list(dict.fromkeys(stats.dataset))
    colours = method_colours(method_order(list(stats.method), methods))
    figure = Figure(figsize=(9.5 * len(datasets), 5.5), layout="constrained")
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    labels = []
    for ax, dataset in zip(axes, datasets):
        data = stats[stats.dataset == dataset]
        columns = ["method", "budget", "mean", "ci_low", "ci_high"]
        points = data.loc[data.measure == accuracy, columns].merge(
            data.loc[data.measure == faithfulness, columns], on=["method", "budget"], suffixes=("_x", "_y")
        )
        if points.empty:
            raise ValueError(f"{dataset}: no method has both {accuracy} and {faithfulness}")
        trained = [b for b in dict.fromkeys(points.budget) if b != UNTRAINED_BUDGET]
        order = {b: i for i, b in enumerate([UNTRAINED_BUDGET, *sorted(trained, key=budget_positions(trained, budget_sizes).get)])}
        for method in method_order(list(points.method), methods):
            rows = points[points.method == method].sort_values("budget", key=lambda b: b.map(order))
            colour = colours[method]
            ax.plot(rows.mean_x, rows.mean_y, color=colour, alpha=0.35, linewidth=1)
            ax.errorbar(
                rows.mean_x, rows.mean_y,
                xerr=[rows.mean_x - rows.ci_low_x, rows.ci_high_x - rows.mean_x],
                yerr=[rows.mean_y - rows.ci_low_y, rows.ci_high_y - rows.mean_y],
                fmt="none", ecolor=colour, elinewidth=1, alpha=0.35, capsize=2,
            )  # fmt: skip
            ax.scatter(rows.mean_x, rows.mean_y, s=55, color=colour, edgecolors="white", zorder=3, label=_name(method))
            for point in rows.itertuples():
                label = f"{_name(method)} (untrained)" if point.budget == UNTRAINED_BUDGET else f"{_name(method)} {point.budget}"
                labels.append(ax.annotate(
                    label, (point.mean_x, point.mean_y), xytext=(7, 6), textcoords="offset points", fontsize=9, color=colour,
                    weight="bold", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}, zorder=4,
                ))  # fmt: skip
        random = data[data.measure == random_measure]
        if len(random):
            k = faithfulness.split("@")[-1]
            ax.axhline(random["mean"].mean(), color="0.4", linestyle=":", label=f"{faithfulness} of {k} random words\n(mean over methods)")
        bm25 = data[(data.method == "bm25") & (data.measure == accuracy)]
        if len(bm25):
            ax.axvline(bm25["mean"].iloc[0], color="black", linestyle="--", linewidth=1, label=f"BM25 {accuracy}")
        ax.set_xlabel(measure_label(accuracy))
        ax.set_ylabel(measure_label(faithfulness))
        ax.set_title(f"{dataset}: ranking accuracy vs. attribution faithfulness")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method / reference")
    figure.suptitle(f"Each point: one method at one training budget (bars: {_ci_level(stats)} bootstrap CI)")
    _separate_labels(figure, labels)
    return _save(figure, path)


def _separate_labels(figure: Figure, labels: list, step: float = 9.0, tries: int = 12) -> None:
    """Move point labels up or down (in steps of ``step`` points) until they overlap no other label and no point."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw_without_rendering()
    radius = 5 * figure.dpi / 72
    placed = []
    for label in labels:
        px, py = label.axes.transData.transform(label.xy)
        placed.append(Bbox.from_bounds(px - radius, py - radius, 2 * radius, 2 * radius))
    for label in labels:
        x, y = label.xyann
        for attempt in range(tries + 1):
            shift = step * ((attempt + 1) // 2) * (1 if attempt % 2 else -1)
            label.xyann = (x, y + shift)
            if not any(label.get_window_extent(renderer).overlaps(other) for other in placed):
                break
        else:
            label.xyann = (x, y)
        placed.append(label.get_window_extent(renderer))


def difference_distributions(
    per_query: pd.DataFrame,
    path: str | Path,
    measure: str = "nDCG@10",
    baseline: str = "bm25",
    methods: Sequence[str] | None = None,
    budget_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> Figure:
    """Box plot and jittered points of per-query ``measure`` difference (method - ``baseline``), per method x budget.

    Test split only; queries aligned by query_id (inner join). White diamonds mark the mean
    difference; the dashed line at 0 is the baseline. One panel per dataset. Returns the Figure.
    """
    table = per_query[(per_query.split == TEST_SPLIT) & (per_query.measure == measure)]
    datasets = list(dict.fromkeys(table.dataset))
    colours = method_colours(method_order(list(table.method), methods))
    rng = np.random.default_rng(seed)
    groups_per_dataset = []
    for dataset in datasets:
        data = table[table.dataset == dataset]
        reference = data[data.method == baseline].set_index("query_id").value
        if reference.empty:
            raise ValueError(f"{dataset}: no {baseline} rows for {measure} on the test split")
        trained = [b for b in dict.fromkeys(data.budget) if b != UNTRAINED_BUDGET]
        budget_rank = {b: i for i, b in enumerate([UNTRAINED_BUDGET, *sorted(trained, key=budget_positions(trained, budget_sizes).get)])}
        groups = []
        for method in method_order(list(data.method), methods):
            if method == baseline:
                continue
            for budget in sorted(set(data[data.method == method].budget), key=budget_rank.get):
                values = data[(data.method == method) & (data.budget == budget)].set_index("query_id").value
                values, base = values.align(reference, join="inner")
                groups.append((method, budget, (values - base).to_numpy()))
        groups_per_dataset.append(groups)
    width = max(6.0, 0.75 * max(len(g) for g in groups_per_dataset) + 2)
    figure = Figure(figsize=(width, 4.5 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, dataset, groups in zip(axes, datasets, groups_per_dataset):
        positions = np.arange(len(groups))
        boxes = ax.boxplot(
            [g[2] for g in groups], positions=positions, widths=0.55, showfliers=False, patch_artist=True,
            medianprops={"color": "black"},
        )  # fmt: skip
        for box, (method, _, _) in zip(boxes["boxes"], groups):
            box.set_facecolor((*colours[method][:3], 0.25))
            box.set_edgecolor(colours[method])
        for position, (method, _, differences) in zip(positions, groups):
            jitter = rng.uniform(-0.18, 0.18, len(differences))
            ax.scatter(position + jitter, differences, s=12, color=colours[method], alpha=0.6, linewidths=0)
            ax.scatter([position], [differences.mean()], marker="D", s=40, color="white", edgecolors="black", zorder=3)
        ax.axhline(0, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(positions, [_name(m) if b == UNTRAINED_BUDGET else f"{_name(m)}\n{b}" for m, b, _ in groups])
        ax.set_xlabel("method and training budget (number of training queries)")
        ax.set_ylabel(f"{measure} − {_name(baseline)} {measure}\n(per test query)")
        ax.set_title(
            f"{dataset}: per-query {measure} difference to {_name(baseline)} (above 0: better than {_name(baseline)})\n"
            "dots: test queries; box: quartiles and median; whiskers: 1.5 × IQR; ◇: mean",
            fontsize=10,
        )
        ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def attribution_documents(
    attributions: pd.DataFrame, run: pd.DataFrame, method: str, budget: str, query_id: str, top: int = 3
) -> list[dict]:
    """The ``top`` explained documents of one query for ``example_page``, in rank order.

    ``attributions``: ATTRIBUTIONS rows; ``run``: the method's re-ranked run (query_id, doc_id,
    score, rank). Returns dicts with doc_id, rank, score, tokens and attributions (document
    words in position order).
    """
    words = attributions[
        (attributions.method == method)
        & (attributions.budget == budget)
        & (attributions.query_id == query_id)
        & (attributions.part == "document")
    ]
    ranked = run[(run.query_id == query_id) & run.doc_id.isin(set(words.doc_id))].sort_values("rank").head(top)
    documents = []
    for entry in ranked.itertuples():
        document = words[words.doc_id == entry.doc_id].sort_values("position")
        documents.append(
            {
                "doc_id": entry.doc_id, "rank": int(entry.rank), "score": float(entry.score),
                "tokens": list(document.token), "attributions": document.attribution.to_numpy(),
            }  # fmt: skip
        )
    return documents


# Page layout of example_page, in points (1/72 inch).
PAGE_WIDTH = 11 * 72
MARGIN = 24
FONT_SIZE = 10
LINE_HEIGHT = 17
WORD_GAP = 5


def _layout_words(
    words: Sequence[str], prop: FontProperties, renderer: RendererAgg, width: float, x0: float
) -> list[list[tuple[float, str]]]:
    """Greedy line breaking: lines of (x offset, word) no wider than ``width`` points."""
    lines, line, x = [], [], x0
    for word in words:
        w = renderer.get_text_width_height_descent(word, prop, ismath=False)[0] * 72 / renderer.dpi
        if line and x + w > x0 + width:
            lines.append(line)
            line, x = [], x0
        line.append((x, word))
        x += w + WORD_GAP
    if line:
        lines.append(line)
    return lines


def _text_colour(rgba) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "white" if luminance < 0.5 else "black"


def example_page(
    query: str,
    documents: Sequence[Mapping],
    rationale: str | Mapping[str, str],
    path: str | Path,
    title: str | None = None,
    max_words: int | None = 150,
) -> Figure:
    """One query, its top documents with every word shaded by its attribution, and the rationale.

    ``documents``: mappings with doc_id, tokens (document words) and attributions (one value
    per word, score units), optionally rank, score and relevance (as from
    ``attribution_documents``). ``rationale``: one text shown below all documents, or
    doc_id -> text shown below each document. ``max_words``: words shown per document (the
    rest is counted, not drawn). A diverging colour map centred at 0 with a colour bar:
    red words raised the score, blue words lowered it. Returns the Figure.
    """
    # Measure words at the output resolution: hinted glyph widths do not scale linearly with dpi.
    renderer = RendererAgg(int(PAGE_WIDTH * DPI / 72), 100, DPI)
    regular = FontProperties(size=FONT_SIZE)
    bold = FontProperties(size=FONT_SIZE + 1, weight="bold")
    text_width = PAGE_WIDTH - 2 * MARGIN
    # One symmetric scale for the page, so equal colours mean equal attributions across documents.
    limit = max((float(np.abs(np.asarray(d["attributions"], dtype=float)).max(initial=0.0)) for d in documents), default=0.0)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-(limit or 1.0), vmax=limit or 1.0)
    cmap = matplotlib.colormaps[ATTRIBUTION_COLORMAP]

    # Lay everything out top-down in points first; the page height follows from it.
    items = []  # (kind, x, y, text, attribution or None), x and y in points from the top left
    y = MARGIN
    title_font = FontProperties(size=FONT_SIZE + 4, weight="bold")
    for line in _layout_words(title.split(), title_font, renderer, text_width, MARGIN) if title else []:
        items += [("title", x, y, w, None) for x, w in line]
        y += LINE_HEIGHT + 4
    for line in _layout_words(["Query:", *query.split()], bold, renderer, text_width, MARGIN):
        items += [("bold", x, y, w, None) for x, w in line]
        y += LINE_HEIGHT
    colourbar_y = y + 6
    y = colourbar_y + 58
    for document in documents:
        words = list(document["tokens"])
        values = np.asarray(document["attributions"], dtype=float)
        if len(words) != len(values):
            raise ValueError(f"document {document['doc_id']}: {len(words)} words but {len(values)} attributions")
        header = [f"#{document['rank']}" if "rank" in document else "", str(document["doc_id"])]
        header += [f"score {document['score']:.3g}"] if "score" in document else []
        header += [f"relevance {document['relevance']}"] if "relevance" in document else []
        items.append(("bold", MARGIN, y, "   ".join(h for h in header if h), None))
        y += LINE_HEIGHT + 2
        shown = words if max_words is None else words[:max_words]
        position = 0
        for line in _layout_words(shown, regular, renderer, text_width, MARGIN):
            for x, word in line:
                items.append(("word", x, y, word, values[position]))
                position += 1
            y += LINE_HEIGHT + 3
        if max_words is not None and len(words) > max_words:
            items.append(("note", MARGIN, y, f"… {len(words) - max_words} more words not shown", None))
            y += LINE_HEIGHT
        if isinstance(rationale, Mapping) and document["doc_id"] in rationale:
            y = _layout_rationale(items, rationale[document["doc_id"]], "Rationale:", renderer, text_width, y + 2)
        y += 12
    if isinstance(rationale, str) and rationale:
        y = _layout_rationale(items, rationale, "Rationale:", renderer, text_width, y)
    height = y + MARGIN

    figure = Figure(figsize=(PAGE_WIDTH / 72, height / 72))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, PAGE_WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for kind, x, y, text, value in items:
        if kind == "word":
            colour = cmap(norm(value))
            ax.text(
                x, y, text, fontproperties=regular, va="top", ha="left", color=_text_colour(colour),
                bbox={"boxstyle": "square,pad=0.2", "facecolor": colour, "edgecolor": "none"},
            )  # fmt: skip
        elif kind == "title":
            ax.text(x, y, text, fontsize=FONT_SIZE + 4, weight="bold", va="top", ha="left")
        elif kind == "bold":
            ax.text(x, y, text, fontproperties=bold, va="top", ha="left")
        elif kind == "rationale":
            ax.text(x, y, text, fontproperties=regular, va="top", ha="left", style="italic", color="0.15")
        else:
            ax.text(x, y, text, fontproperties=regular, va="top", ha="left", color="0.4")
    bar = figure.add_axes((MARGIN / PAGE_WIDTH, 1 - (colourbar_y + 14) / height, 0.45, 10 / height))
    colourbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar, orientation="horizontal")
    colourbar.set_label("word attribution (SHAP value, score units): red raised the score, blue lowered it", fontsize=9)
    colourbar.ax.tick_params(labelsize=8)
    return _save(figure, path)


def _layout_rationale(items: list, text: str, label: str, renderer: RendererAgg, width: float, y: float) -> float:
    """Append a wrapped rationale to ``items`` from height ``y``; return the height below it."""
    prop = FontProperties(size=FONT_SIZE, style="italic")
    items.append(("bold", MARGIN, y, label, None))
    y += LINE_HEIGHT
    for paragraph in textwrap.dedent(text).strip().splitlines() or [""]:
        for line in _layout_words(paragraph.split(), prop, renderer, width, MARGIN):
            items.append(("rationale", MARGIN, y, " ".join(w for _, w in line), None))
            y += LINE_HEIGHT
    return y


def dev_curves(records: Sequence[Mapping], path: str | Path) -> Figure:
    """Model selection's dev curves: one panel per trained method and budget, one line per learning rate.

    ``records``: ``training_config.json`` of each trained model (dicts with ``method``, and
    ``selection`` as :func:`rerank_audit.training.selection.selection_record` writes it, plus
    ``budget``). Each panel plots the dev measure against the optimizer step for every
    learning rate of the grid (step 0, the untrained model, starts every line), the
    untrained level as a dotted horizontal line, and the chosen (learning rate, step) as a
    ring. For a method whose untrained form ranks nothing (``Method.untrained_ranks``
    False: dpo, dpo_pairs, reward) step 0 is neither drawn nor a level: its value is that of
    tied or random scores. Records without ``selection`` are skipped; ValueError when none has one.
    """
    selected = [record for record in records if record.get("selection")]
    if not selected:
        raise ValueError("no training_config.json holds a selection record: train with train.selection to draw dev curves")
    columns = min(4, len(selected))
    rows = -(-len(selected) // columns)
    figure = Figure(figsize=(4.2 * columns + 0.6, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    palette = matplotlib.colormaps["viridis"]
    for ax, record in zip(axes.flat, selected):
        selection = record["selection"]
        curve = pd.DataFrame(selection["dev_curve"])
        choice = selection["choice"]
        untrained = choice["untrained_value"]
        ranks = method_spec(record["method"]).untrained_ranks
        rates = sorted(curve.learning_rate.unique())
        for i, rate in enumerate(rates):
            line = curve[curve.learning_rate == rate].sort_values("step")
            if not ranks:
                line = line[line.step > 0]
            elif 0 not in set(line.step):  # every run starts from the untrained model
                line = pd.concat([pd.DataFrame([{"learning_rate": rate, "step": 0, "value": untrained}]), line])
            colour = palette(i / max(1, len(rates) - 1) * 0.85)
            ax.plot(line.step, line.value, marker="o", markersize=3, color=colour, label=f"lr {rate:g}")
        if ranks:
            ax.axhline(untrained, color="grey", linestyle=UNTRAINED_LINESTYLE, linewidth=1.5, label="untrained (step 0)")
        ax.plot([choice["step"]], [choice["value"]], marker="o", markersize=11, markerfacecolor="none", markeredgecolor="red",
                linestyle="none", label="chosen")
        budget = record.get("budget")
        ax.set_title(_name(record["method"]) + (f", {budget} queries" if budget not in (None, "all") else ""), fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"dev {measure_label(selection['measure'])}")
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(selected):]:
        ax.set_visible(False)
    dev = selected[0]["selection"]["dev_queries"]
    figure.suptitle(f"Model selection on {dev} dev queries (their judged documents)", fontsize=11)
    return _save(figure, path)

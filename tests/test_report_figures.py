"""Report outputs: every figure is a readable PNG, the learning curves draw one line per method, and
summary.md marks significance and states generated findings."""

import struct

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation import plots
from rerank_audit.evaluation.statistics import compare_methods
from rerank_audit.evaluation.summary import selection_markdown, summary_markdown

TRAINED = ["sft", "dpo", "reward"]
BUDGETS = {"5": 0.02, "20": 0.06, "all": 0.10}
BUDGET_SIZES = {"all": 60}
COLUMNS = ["dataset", "method", "budget", "split", "query_id", "measure", "value"]


def made_up_tables(n_queries: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-query ranking and explainability tables: trained methods improve with the budget."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.7, n_queries)
    ranking, explain = [], []
    runs = [("bm25", "0", 0.0), ("zeroshot", "0", 0.01)]
    runs += [(m, b, gain * (i + 1)) for i, m in enumerate(TRAINED) for b, gain in BUDGETS.items()]
    for method, budget, gain in runs:
        for q in range(n_queries):
            query = f"q{q}"
            for measure in ["nDCG@10", "RR@10", "AP"]:
                ranking.append(("toy", method, budget, "test", query, measure, float(base[q] + gain + rng.normal(0, 0.03))))
            if method == "bm25":
                continue
            for measure, value in {
                "comprehensiveness@5": 0.2 + gain, "comprehensiveness_random@5": 0.1, "sufficiency@5": 0.3 - gain,
                "sufficiency_random@5": 0.4, "lexical_shortcut": 0.5, "keyword_coverage": 0.6,
                "verdict_agreement": 0.7, "unsupported_rate": 0.1,
            }.items():  # fmt: skip
                explain.append(("toy", method, budget, "test", query, measure, value + rng.normal(0, 0.02)))
    return pd.DataFrame(ranking, columns=COLUMNS), pd.DataFrame(explain, columns=COLUMNS)


@pytest.fixture(scope="module")
def tables():
    ranking, explain = made_up_tables()
    stats = compare_methods(ranking, n_resamples=200, seed=0)
    explain_stats = compare_methods(explain, n_resamples=200, seed=0)
    return ranking, explain, stats, pd.concat([stats, explain_stats], ignore_index=True)


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header; fails on anything that is not a PNG."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def assert_plausible_png(path, min_width=600, min_height=300):
    assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    width, height = png_size(path)
    assert width >= min_width and height >= min_height
    assert width <= 6000 and height <= 6000


def test_learning_curves_draw_one_line_per_trained_method_and_the_references(tables, tmp_path):
    *_, stats = tables
    path = tmp_path / "learning_curves.png"
    figure = plots.learning_curves(stats, path, measures=("nDCG@10", "comprehensiveness@5"), budget_sizes=BUDGET_SIZES)
    assert_plausible_png(path)
    ndcg, comprehensiveness = figure.axes[:2]
    labels = [line.get_label() for line in ndcg.get_lines()]
    assert sorted(labels) == sorted(TRAINED + ["BM25 (untrained)", "zero-shot (untrained)"])
    sft = next(line for line in ndcg.get_lines() if line.get_label() == "sft")
    assert list(sft.get_xdata()) == [5, 20, 60]  # "all" placed at its number of training queries
    # BM25 has no attributions: no reference line on the comprehensiveness panel.
    assert sorted(line.get_label() for line in comprehensiveness.get_lines()) == sorted(TRAINED + ["zero-shot (untrained)"])
    assert "training queries" in ndcg.get_xlabel() and "nDCG@10" in ndcg.get_ylabel()


def test_every_method_of_the_study_has_its_own_colour():
    # The CLIMATE-FEVER study: 2 baselines, 8 methods, 3 fused rows; tab10 alone wraps at 10.
    study = ["random", "bm25", "zeroshot", "sft", "dpo", "dpo_pairs", "reward", "qlm", "qlm+bm25", "qlm_sft", "qlm_sft+bm25", "qlm_lce", "qlm_lce+bm25"]
    colours = plots.method_colours(study)
    assert len(set(colours.values())) == len(study)
    assert colours["bm25"][:3] == (0.0, 0.0, 0.0)
    red, green, blue, _ = colours["random"]
    assert red == green == blue and 0 < red < 1  # a grey: a baseline, not a method's colour


def test_learning_curves_need_the_size_of_a_named_budget(tables, tmp_path):
    *_, stats = tables
    with pytest.raises(ValueError, match="budget_sizes"):
        plots.learning_curves(stats, tmp_path / "curves.png")


def test_accuracy_vs_faithfulness_has_one_labelled_point_per_method_and_budget(tables, tmp_path):
    *_, stats = tables
    path = tmp_path / "scatter.png"
    figure = plots.accuracy_vs_faithfulness(stats, path, budget_sizes=BUDGET_SIZES)
    assert_plausible_png(path)
    labels = sorted(text.get_text() for text in figure.axes[0].texts)
    assert labels == sorted(["zero-shot (untrained)"] + [f"{m} {b}" for m in TRAINED for b in BUDGETS])


def test_difference_distributions_writes_a_png(tables, tmp_path):
    ranking, *_ = tables
    path = tmp_path / "differences.png"
    figure = plots.difference_distributions(ranking, path, budget_sizes=BUDGET_SIZES)
    assert_plausible_png(path)
    assert len(figure.axes[0].get_xticklabels()) == 1 + len(TRAINED) * len(BUDGETS)  # zeroshot + trained runs


def test_example_page_colours_every_shown_word(tmp_path):
    documents = [
        {"doc_id": "d1", "rank": 1, "score": 2.0, "tokens": "glacier mass loss in the Alps".split(),
         "attributions": [0.5, 0.2, 0.1, 0.0, -0.1, 0.3]},
        {"doc_id": "d2", "rank": 2, "score": 1.0, "tokens": "sea surface temperature".split(), "attributions": [-0.4, 0.0, 0.1]},
    ]
    path = tmp_path / "example.png"
    figure = plots.example_page("alpine glacier retreat", documents, "The document is relevant: it reports glacier mass loss.", path)
    assert_plausible_png(path, min_height=200)
    shaded = [t for t in figure.axes[0].texts if t.get_bbox_patch() is not None]
    assert [t.get_text() for t in shaded] == documents[0]["tokens"] + documents[1]["tokens"]
    assert any("glacier mass loss." in t.get_text() for t in figure.axes[0].texts)  # the rationale


def test_summary_marks_significant_methods_and_generates_findings(tables):
    ranking, explain, stats, _ = tables
    summary = summary_markdown(stats, explain, methods=["zeroshot", *TRAINED], budget_sizes=BUDGET_SIZES)
    assert summary.count("\n| method |") == len(BUDGETS)  # one table per trained budget
    section = summary.split("## toy — budget all (60 training queries)")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| BM25", "| zero-shot", "| sft", "| dpo", "| reward"]
    reward = stats[(stats.method == "reward") & (stats.budget == "all") & (stats.measure == "nDCG@10")].iloc[0]
    assert f"{reward['mean']:.3f} [{reward.ci_low:.3f}, {reward.ci_high:.3f}]▲" in rows[-1]
    assert rows[1].count("–") == 6  # BM25: no explainability
    assert "Holm" in section and "bootstrap" in section
    assert "sft, dpo and reward rank significantly better than BM25 on nDCG@10" in section
    assert "the best-ranking method, reward" in section


def _selection_record(method, curve, choice):
    rows = [{"learning_rate": rate, "step": step, "value": value} for rate, step, value in curve]
    grid = {"learning_rates": [1e-4, 1e-3], "epochs": 1, "eval_steps": 2, "measure": "nDCG@5"}
    trained = choice[1] != 0
    return {"method": method, "budget": "100", "selection": {
        "measure": "nDCG@5", "dev_queries": 3, "grid": grid, "dev_curve": rows,
        "choice": {"learning_rate": choice[0], "step": choice[1], "value": choice[2], "untrained_value": choice[3], "trained": trained},
    }}  # fmt: skip


def test_selection_table_shows_each_methods_choice_and_its_gain_over_step_0():
    records = [
        # Given out of order: rows follow the configured methods.
        _selection_record("qlm_sft", [(1e-4, 0, 0.70), (1e-4, 2, 0.65), (1e-4, 4, 0.68), (1e-3, 2, 0.60), (1e-3, 4, 0.60)], (None, 0, 0.70, 0.70)),
        _selection_record("sft", [(1e-4, 0, 0.50), (1e-4, 2, 0.60), (1e-4, 4, 0.55), (1e-3, 2, 0.40), (1e-3, 4, 0.45)], (1e-4, 2, 0.60, 0.50)),
        # dpo's untrained model ranks nothing: no step-0 level, no gain.
        _selection_record("dpo", [(1e-4, 0, 0.30), (1e-4, 2, 0.35), (1e-4, 4, 0.33), (1e-3, 2, 0.31), (1e-3, 4, 0.34)], (1e-4, 2, 0.35, 0.30)),
        # reward's best is its last step at the highest rate: the grid's edge.
        _selection_record("reward", [(1e-4, 0, 0.30), (1e-4, 2, 0.35), (1e-4, 4, 0.36), (1e-3, 2, 0.40), (1e-3, 4, 0.45)], (1e-3, 4, 0.45, 0.30)),
        {"method": "qlm", "budget": "100", "selection": None},  # trained without selection: no row
    ]
    table = selection_markdown(records, methods=["zeroshot", "sft", "dpo", "reward", "qlm", "qlm_sft"])
    rows = [line.split(" | ")[2:] for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method") and "@" in line]
    assert rows == [
        ["0.500", "0.0001: 0.600 @ 2, 0.550 @ 4; 0.001: 0.450 @ 4, 0.450 @ 4", "lr 0.0001, step 2", "+0.100 |"],
        ["–", "0.0001: 0.350 @ 2, 0.330 @ 4; 0.001: 0.340 @ 4, 0.340 @ 4", "lr 0.0001, step 2", "– |"],
        ["–", "0.0001: 0.360 @ 4, 0.360 @ 4; 0.001: 0.450 @ 4, 0.450 @ 4", "lr 0.001, step 4 (grid edge: highest learning rate and last step)", "– |"],
        # ties keep the earliest step (0.001: 0.600 at steps 2 and 4)
        ["0.700", "0.0001: 0.680 @ 4, 0.680 @ 4; 0.001: 0.600 @ 2, 0.600 @ 4", "untrained (step 0)", "+0.000 |"],
    ]
    assert "dev nDCG@5 on 3 dev queries" in table
    assert "Dev selection kept the untrained model for qlm_sft." in table
    assert "dpo and reward: the untrained model ranks nothing" in table
    assert "The choice lies at the grid's edge for reward:" in table

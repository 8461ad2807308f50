"""Markdown tables of aggregated metrics (rows = runs, columns = measures)."""

from __future__ import annotations

import pandas as pd


def metrics_markdown(metrics: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-markdown table of ``aggregate()`` output: one row per (split, method, budget)."""
    wide = metrics.pivot_table(index=["split", "method", "budget", "queries"], columns="measure", values="value", sort=False)
    wide = wide[list(dict.fromkeys(metrics.measure))].reset_index()
    header = "| " + " | ".join(wide.columns) + " |"
    rule = "|" + "|".join("---" if i < 4 else "---:" for i in range(len(wide.columns))) + "|"
    rows = [
        "| " + " | ".join(str(v) if i < 4 else f"{v:.{digits}f}" for i, v in enumerate(row)) + " |"
        for row in wide.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows]) + "\n"

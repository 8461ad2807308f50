"""Query-level train/dev/test splits and nested training budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_NAMES = ("train", "dev", "test")


def evaluable_queries(qrels: pd.DataFrame, relevance_threshold: int) -> list[str]:
    """Ids of queries with at least one document judged relevant (relevance ≥ threshold), sorted."""
    return sorted(qrels.loc[qrels.relevance >= relevance_threshold, "query_id"].unique())


def _count(size: float, total: int) -> int:
    """A split size given as a fraction (< 1) or a number of queries."""
    return int(round(size * total)) if size < 1 else int(size)


def _shown(size: float, count: int) -> str:
    """A split size as the config wrote it, with its count of queries ("0.5: 4 queries", "20 queries")."""
    return f"{size}: {count} queries" if 0 < size < 1 else f"{count} queries"


def split_queries(query_ids: list[str], seed: int, dev: float, test: float, *, trains: bool = False) -> pd.DataFrame:
    """Shuffle ``query_ids`` with ``seed`` and cut test, then dev, the rest is train.

    Returns (query_id, split, position); position is the order within the split, so
    ``budget_queries`` can take nested prefixes of the training queries. The result depends
    only on the sorted ids and the seed, never on input order. ``trains``: models are trained
    on the training queries, so a split that leaves none is refused. The errors name the keys
    ``split.test`` and ``split.dev``, the counts and the fix.
    """
    ids = np.array(sorted(query_ids), dtype=object)
    total = len(ids)
    if total == 0:
        raise ValueError(
            "no query has a relevant judgement, so there is nothing to split. Fix: check the dataset's qrels and its "
            "relevance_threshold (a query needs a judgement at or above it)"
        )
    order = np.random.default_rng(seed).permutation(total)
    n_test, n_dev = _count(test, total), _count(dev, total)
    if n_test == 0:
        raise ValueError(f"split.test: {test} of {total} evaluable queries rounds to no test query; raise it")
    taken = n_test + n_dev
    if taken > total or (trains and taken == total):
        asked = f"split.test ({_shown(test, n_test)}) and split.dev ({_shown(dev, n_dev)})"
        if taken > total:
            problem = f"{asked} ask for {taken} of the {total} evaluable queries (those with a relevant judgement)"
        else:
            problem = f"{asked} take all {total} evaluable queries (those with a relevant judgement): no training query is left for the trained methods"
        raise ValueError(
            f"{problem}. Fix: lower split.test or split.dev, as shares (e.g. split.test: 0.5) or as counts that add up to "
            f"at most {total - 1 if trains else total}"
        )
    names = ["test"] * n_test + ["dev"] * n_dev + ["train"] * (total - taken)
    frame = pd.DataFrame({"query_id": ids[order], "split": names})
    frame["position"] = frame.groupby("split").cumcount().astype("int64")
    return frame.reset_index(drop=True)


def budget_queries(splits: pd.DataFrame, budget: str | int) -> list[str]:
    """The training queries of a budget: the first ``budget`` train queries, or all for "all"."""
    train = splits[splits.split == "train"].sort_values("position")
    if str(budget) == "all":
        return train.query_id.tolist()
    n = int(budget)
    if n > len(train):
        raise ValueError(f"budgets: {n} exceeds the {len(train)} training queries of this split; lower it or use all")
    return train.query_id.head(n).tolist()


def check_fits(splits: pd.DataFrame, budgets: list, explain_queries, explain_key: str) -> None:
    """Raise when a config count asks for more queries than the split has, naming the key.

    ``budgets``: the config's training budgets (numbers, or "all"); ``explain_queries``: the
    test queries explained per method (a number, or "all"), read from ``explain_key``.
    """
    sizes = splits.split.value_counts()
    n_train, n_test = int(sizes.get("train", 0)), int(sizes.get("test", 0))
    over = [b for b in budgets if str(b) != "all" and int(b) > n_train]
    if over:
        raise ValueError(f"budgets {over} exceed the {n_train} training queries of this split; lower them or use all")
    if str(explain_queries) != "all" and int(explain_queries) > n_test:
        raise ValueError(f"{explain_key} ({explain_queries}) exceeds the {n_test} test queries; lower it or write all")

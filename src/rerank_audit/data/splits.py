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


def split_queries(query_ids: list[str], seed: int, dev: float, test: float) -> pd.DataFrame:
    """Shuffle ``query_ids`` with ``seed`` and cut test, then dev, the rest is train.

    Returns (query_id, split, position); position is the order within the split, so
    ``budget_queries`` can take nested prefixes of the training queries. The result depends
    only on the sorted ids and the seed, never on input order.
    """
    ids = np.array(sorted(query_ids), dtype=object)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test, n_dev = _count(test, len(ids)), _count(dev, len(ids))
    if n_test + n_dev > len(ids):
        raise ValueError(
            f"split.test ({test}: {n_test} queries) and split.dev ({dev}: {n_dev}) exceed the {len(ids)} evaluable queries "
            "(with a relevant judgement); lower them"
        )
    if n_test == 0:
        raise ValueError(f"split.test: {test} of {len(ids)} evaluable queries rounds to no test query; raise it")
    names = ["test"] * n_test + ["dev"] * n_dev + ["train"] * (len(ids) - n_test - n_dev)
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

"""Config traps stop the workflow with a message that names the key and the fix."""

import pandas as pd
import pytest

from rerank_audit.config import check_config, dataset_sources, load_config
from rerank_audit.data.splits import check_fits, split_queries
from workflow_runner import REPO, snakemake, tiny_config, write_config, write_tiny_collection

CONFIG = REPO / "config" / "config.yaml"


def checked(**changes):
    config = load_config(CONFIG)
    for path, value in changes.items():
        section, key = path.split("__")
        config[section][key] = value
    check_config(config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("split__test", 1.0, r"split.test: 1.0 is neither a share of the queries in \(0, 1\) nor a whole number"),
        ("split__test", 0, r"split.test: 0 is neither"),
        ("split__test", 2.5, r"split.test: 2.5 is neither"),
        ("split__dev", 1.0, r"split.dev: 1.0 is neither"),
        ("rerank__depth", 150, r"rerank.depth \(150\) is above retrieve.k \(100\)"),
        ("rerank__fusion", ["qlm", "colbert"], r"rerank.fusion names \['colbert'\], which are not in methods"),
        # model selection without dev queries: config.yaml has split.dev 0
        ("train__selection", {"learning_rates": [1e-4], "epochs": 1, "eval_steps": 2, "measure": "nDCG@10"},
         r"train.selection chooses each method's checkpoint on dev queries, but split.dev is 0 \(no dev queries\); set split.dev"),
        ("train__methods", {"qlm_lce": {"max_length": 128}}, r"train.methods.qlm_lce.max_length: qlm_lce trains on the tokens it is scored on"),
    ],
)
def test_a_config_trap_stops_with_the_key_and_the_fix(key, value, message):
    with pytest.raises(ValueError, match=message):
        checked(**{key: value})


def test_fractions_counts_and_a_zero_dev_split_pass():
    """A share, a count and a zero dev size pass the check unchanged, and cut 8 queries as worked by hand:
    test 0.5 -> 4, dev 0 -> 0, train 8 - 4 = 4; test 3 -> 3, dev 0.2 -> round(1.6) = 2, train 8 - 5 = 3."""
    ids = [f"q{i}" for i in range(8)]
    for split, sizes in [({"test": 0.5, "dev": 0}, {"test": 4, "dev": 0, "train": 4}), ({"test": 3, "dev": 0.2}, {"test": 3, "dev": 2, "train": 3})]:
        config = load_config(CONFIG)
        config["split"].update(split)
        check_config(config)  # returns: no trap
        assert (config["split"]["test"], config["split"]["dev"]) == (split["test"], split["dev"])
        cut = split_queries(ids, seed=config["split"]["seed"], dev=config["split"]["dev"], test=config["split"]["test"], trains=True)
        assert {name: int((cut.split == name).sum()) for name in ("test", "dev", "train")} == sizes
        assert sorted(cut.query_id) == ids  # every query once
        for name, size in sizes.items():
            assert sorted(cut.position[cut.split == name]) == list(range(size))


def test_selection_with_a_dev_split_passes_and_an_unknown_measure_stops():
    config = load_config(CONFIG, REPO / "config" / "tuning-demo.yaml")
    check_config(config)
    config["train"]["selection"]["measure"] = "nDCG@ten"
    with pytest.raises(ValueError, match=r"train.selection.measure: measure 'nDCG@ten' is not an ir-measures name"):
        check_config(config)


def test_a_split_larger_than_the_queries_or_rounding_to_no_test_query_stops():
    ids = [f"q{i}" for i in range(8)]
    with pytest.raises(ValueError) as error:
        split_queries(ids, seed=1, dev=0, test=20)
    assert str(error.value) == (
        "split.test (20 queries) and split.dev (0 queries) ask for 20 of the 8 evaluable queries (those with a relevant "
        "judgement). Fix: lower split.test or split.dev, as shares (e.g. split.test: 0.5) or as counts that add up to at most 8"
    )
    with pytest.raises(ValueError, match=r"split.test \(0.75: 6 queries\) and split.dev \(3 queries\) ask for 9 of the 8 evaluable"):
        split_queries(ids, seed=1, dev=3, test=0.75)
    with pytest.raises(ValueError, match=r"split.test: 0.01 of 8 evaluable queries rounds to no test query"):
        split_queries(ids, seed=1, dev=0, test=0.01)
    with pytest.raises(ValueError, match=r"no query has a relevant judgement, .* relevance_threshold"):
        split_queries([], seed=1, dev=0, test=0.5)


def test_a_split_that_leaves_no_training_query_stops_only_where_methods_train():
    ids = [f"q{i}" for i in range(8)]
    with pytest.raises(ValueError) as error:
        split_queries(ids, seed=1, dev=2, test=6, trains=True)
    assert str(error.value) == (
        "split.test (6 queries) and split.dev (2 queries) take all 8 evaluable queries (those with a relevant judgement): no "
        "training query is left for the trained methods. Fix: lower split.test or split.dev, as shares (e.g. split.test: 0.5) "
        "or as counts that add up to at most 7"
    )
    # untrained methods only: every query may be a test query
    assert split_queries(ids, seed=1, dev=0, test=8).split.value_counts().to_dict() == {"test": 8}
    assert split_queries(ids, seed=1, dev=1, test=6, trains=True).split.value_counts().to_dict() == {"test": 6, "dev": 1, "train": 1}


def test_a_missing_source_path_is_named_by_its_config_key(tmp_path):
    spec = {"sources": {"folder": str(tmp_path / "my-beir"), "extra": str(tmp_path)}, "download": {"claims": {}}}
    with pytest.raises(ValueError, match=r"^datasets.mine.sources.folder: '.*my-beir' does not exist .* add datasets.mine.download.folder"):
        dataset_sources("mine", spec, downloaded=str)
    # an absent path with a download entry is read from the download; a present one as it is
    spec["download"]["folder"] = {}
    assert dataset_sources("mine", spec, downloaded=lambda role: f"downloads/{role}") == {"folder": "downloads/folder", "extra": str(tmp_path)}


def test_budgets_and_explained_queries_above_the_split_stop_naming_the_key():
    splits = pd.DataFrame({"query_id": ["a", "b", "c", "d"], "split": ["train", "train", "train", "test"], "position": [0, 1, 2, 0]})
    check_fits(splits, [1, 3, "all"], 1, "explain.queries")
    with pytest.raises(ValueError, match=r"budgets \[4\] exceed the 3 training queries"):
        check_fits(splits, [1, 4], "all", "explain.queries")
    with pytest.raises(ValueError, match=r"datasets.x.explain_queries \(2\) exceeds the 1 test queries"):
        check_fits(splits, ["all"], 2, "datasets.x.explain_queries")


def test_a_trap_stops_a_dry_run_before_any_job(tmp_path):
    write_tiny_collection(tmp_path)
    config = tiny_config()
    config["split"]["test"] = 1.0
    result = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", check=False)
    assert result.returncode != 0 and "split.test: 1.0 is neither a share" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_budget_above_the_training_queries_stops_the_split_job(tmp_path):
    write_tiny_collection(tmp_path)
    config = tiny_config(methods=["zeroshot"], budgets=[3])  # 4 rated queries, 2 for test: 2 training queries
    result = snakemake(tmp_path, write_config(tmp_path, config), "results/tiny/split/splits.parquet", check=False)
    assert result.returncode != 0
    assert "budgets [3] exceed the 2 training queries" in (tmp_path / "logs/tiny/split.log").read_text()

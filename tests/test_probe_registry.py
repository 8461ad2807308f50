"""A probe is one registry entry: the config check, the DAG, the probe job and the report read it.

"lowercase" is a toy probe registered in every process of the Snakemake runs here (sitecustomize)
and, for the report's side, in this process while a test runs; nowhere else.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest

from rerank_audit.evaluation.probe_summary import probes_markdown
from rerank_audit.evaluation.probes import compare_with_reference, probe_figure, probe_tests
from rerank_audit.probe.registry import REGISTRY
from workflow_runner import planned_rules, snakemake, tiny_config, write_config, write_tiny_collection

TOY_PROBE = """
from rerank_audit.probe.registry import REGISTRY, Probe


def lowercase_pairs(pool, **_):
    return pool.assign(edited=[document.lower() for document in pool.document])


# BM25 lower-cases every token: by its formula, no response at all.
REGISTRY["lowercase"] = Probe("lowercase", "lower case", "document lower-cased", "none", lowercase_pairs)
"""
PROBE_TABLE = "results/tiny/probe/bm25/0/probes.parquet"


def probe_config(probes, methods=()):
    config = tiny_config(methods=methods)
    config["probe"] = {"probes": probes, "max_documents": None, "seed": 1}
    return config


@pytest.fixture
def toy_probe(tmp_path, monkeypatch):
    """The tiny collection in ``tmp_path``, and "lowercase" registered here and in every process the test starts."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(TOY_PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    write_tiny_collection(tmp_path)
    exec(TOY_PROBE, {})
    yield tmp_path
    del REGISTRY["lowercase"]


def test_the_registry_imports_neither_scipy_nor_bm25s():
    """The config check reads the registry at every Snakefile parse (dry runs and each job's): it must stay light."""
    code = "import sys, rerank_audit.probe.registry; print(sorted({'scipy', 'bm25s', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.slow
def test_a_probe_added_as_one_entry_is_planned_run_and_reported(toy_probe):
    workdir = toy_probe
    config = write_config(workdir, probe_config(["lowercase", "shuffle"], methods=["zeroshot"]))
    jobs = planned_rules(workdir, config)
    assert jobs["probe"] == 1 and jobs["probe_bm25"] == 1 and jobs["report"] == 1
    # BM25's probe job runs it (no model needed) and writes its rows beside a built-in probe's.
    snakemake(workdir, write_config(workdir, probe_config(["lowercase", "shuffle"]), "bm25.yaml"), PROBE_TABLE)
    table = pd.read_parquet(workdir / PROBE_TABLE)
    assert set(table.probe) == {"lowercase", "shuffle"} and (table.n_pairs > 0).all()
    lowercase = table[table.probe == "lowercase"].delta.dropna()  # NaN: a query whose head all scores the same
    assert len(lowercase) and (lowercase == 0).all()  # as its entry says
    # The report's tables and figure take it by its entry's label and reading.
    tests = probe_tests(table.assign(dataset="tiny"), n_resamples=200)
    text = probes_markdown(tests, compare_with_reference(table.assign(dataset="tiny")), "tiny")
    assert "| method | word-order shuffle | lower case |" in text and "**Lower case** (document lower-cased): the score moves" in text
    figure = probe_figure(tests, workdir / "probes.png")
    assert [ax.get_title() for ax in figure.axes] == ["shuffle\n(word order shuffled)", "lowercase\n(document lower-cased)"]


@pytest.mark.slow
def test_an_unknown_probe_stops_a_dry_run_naming_the_known_probes(tmp_path):
    write_tiny_collection(tmp_path)
    result = snakemake(tmp_path, write_config(tmp_path, probe_config(["lowercase"])), "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "probe.probes: ['lowercase'] are not probes of rerank-audit; use some of stuffing, " in output
    assert f"{', '.join(REGISTRY)} (rerank_audit/probe/registry.py)" in output

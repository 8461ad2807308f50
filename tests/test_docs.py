"""The pages that name files, tests and rules name ones that exist."""

import re

import yaml

from workflow_runner import REPO

PACKAGE = REPO / "src" / "rerank_audit"
EXTENDING = (REPO / "docs" / "extending.md").read_text()


def test_every_file_and_test_that_extending_md_names_exists():
    paths = set(re.findall(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|smk|yaml|md))(?:::\w+)?`", EXTENDING))
    missing = [p for p in paths if not any((folder / p).exists() for folder in (REPO, PACKAGE, REPO / "tests"))]
    assert not missing, f"docs/extending.md names files that do not exist: {missing}"
    tests = "".join(path.read_text() for path in (REPO / "tests").glob("test_*.py"))
    named = set(re.findall(r"`(?:tests/\w+\.py::)?(test_\w+)`", EXTENDING))
    assert named and not [t for t in named if f"def {t}(" not in tests]


def test_the_guides_slurm_table_names_every_gpu_rule_of_the_profile():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = {rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")}
    guide = (REPO / "docs" / "guide.md").read_text()
    table = guide[guide.index("| rules | SLURM request (profile) |") :].split("\n\n")[0]
    gpu_rows = [line for line in table.splitlines() if "partition `gpu`" in line]
    listed = {rule for line in gpu_rows for rule in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert listed == gpu_rules

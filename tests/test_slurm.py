"""The workflow on a real one-node SLURM cluster (tests/slurm/cluster.sh) equals a local run.

Needs root (slurmd starts the jobs) and Debian's packages (the script installs them with
apt-get when missing); skipped with the reason otherwise.
"""

import copy
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_runner import REPO, job_counts, snakemake, tiny_config, write_config, write_tiny_collection

pytestmark = pytest.mark.slow
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
LOCAL_RULES = {"all", "download", "split"}  # the Snakefile's localrules
SLURM_PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
# Every job's memory, in both runs: a scoring job sizes its batches and cached prefixes from its mem_mb
# (less its runtime and weights), so a local run at the rules' own estimates chunks its masked texts
# differently, and float32 sums move (CI: explanation values 2.4e-5 apart).
MEM_MB = 2000
SAME_MEMORY = ("--set-resources", *(f"{rule}:mem_mb={MEM_MB}" for rule in SLURM_PROFILE["set-resources"]))


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """The environment of a client of a freshly started one-node cluster."""
    if reason := _missing_requirement():
        pytest.skip(f"no SLURM cluster: {reason}")
    state = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    subprocess.run([str(CLUSTER), "start", str(state)], check=True)
    print(f"SLURM cluster setup took {time.monotonic() - started:.0f} s")
    yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PATH": f"{state / 'bin'}:{os.environ['PATH']}"}
    subprocess.run([str(CLUSTER), "stop", str(state)], check=False)


def cpu_only_profile(folder: Path) -> Path:
    """profiles/slurm with this machine's overrides: no GPU or partition, memory that fits, one core a job."""
    profile = copy.deepcopy(SLURM_PROFILE)
    for resources in profile["set-resources"].values():
        resources.pop("gpu"), resources.pop("slurm_partition")
        resources["mem_mb"] = MEM_MB
    profile["default-resources"]["mem_mb"] = MEM_MB  # as profiles/default has it for the local run
    # One thread a job, as the local run has (MAX_THREADS): torch's float32 sums depend on its thread count
    # (the tiny study's explanation measures moved by 1.2e-5 from 1 to 2 threads), and this compares executors.
    profile["set-threads"] = dict.fromkeys(profile["set-threads"], 1)
    profile["slurm-init-seconds-before-status-checks"] = 1
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def sacct_jobs(env: dict) -> list[tuple[str, str]]:
    """(rule, state) of every job the cluster has run, from the comment the executor sets."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-1days", "-o", "Comment,State"],
                         env=env, check=True, capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        comment, state = line.rsplit("|", 1)
        jobs.append((comment.removeprefix("rule_").split("_wildcards_")[0], state))
    return jobs


def parquet_tables(workdir: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(workdir)): pd.read_parquet(p) for p in sorted((workdir / "results").rglob("*.parquet"))}


def test_slurm_run_submits_every_rule_and_equals_a_local_run(slurm_env, tmp_path, tiny_lm_dir):
    config = tiny_config(methods=["sft"], base_model=str(tiny_lm_dir), budgets=[1])  # one trained method runs every rule
    # float32, not auto: each job's bf16 probe could decide differently beside another test worker, and the runs must agree
    config["model"]["dtype"] = "float32"
    workdirs = {}
    for mode in ("local", "slurm"):
        workdirs[mode] = tmp_path / mode
        workdirs[mode].mkdir()
        write_tiny_collection(workdirs[mode])
    local_run = snakemake(workdirs["local"], write_config(workdirs["local"], config), *SAME_MEMORY)
    planned = job_counts(local_run.stdout + local_run.stderr)  # the jobs the local run ran

    snakemake(workdirs["slurm"], write_config(workdirs["slurm"], config), profile=cpu_only_profile(tmp_path / "profile"), env=slurm_env)

    jobs = sacct_jobs(slurm_env)
    expected = Counter({rule: n for rule, n in planned.items() if rule not in LOCAL_RULES})
    assert Counter(rule for rule, _ in jobs) == expected
    assert {state for _, state in jobs} == {"COMPLETED"}
    print(f"{len(jobs)} SLURM jobs: {dict(expected)}")

    local, cluster = parquet_tables(workdirs["local"]), parquet_tables(workdirs["slurm"])
    assert local.keys() == cluster.keys()
    for name, table in local.items():
        # The primary tables agree to 1e-5; the summary's paired differences and t statistics of
        # near-equal methods amplify the runs' float noise (3.5e-8 on a mean difference of 2e-3).
        rtol = 1e-3 if name.endswith("report/summary.parquet") else 1e-5
        pd.testing.assert_frame_equal(cluster[name], table, check_exact=False, rtol=rtol, atol=1e-6, obj=name)

"""Run the real Snakemake workflow on a config in a scratch working directory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
DEFAULT_PROFILE = REPO / "profiles" / "default"
# Each Snakemake run of the suite takes a few minutes at most: one that hangs fails its test
# here, with its output, instead of blocking CI until the job's own limit.
SNAKEMAKE_TIMEOUT_S = 20 * 60


def run_bounded(command: Sequence[str], timeout_s: float = SNAKEMAKE_TIMEOUT_S, **popen) -> subprocess.CompletedProcess:
    """Run ``command`` with its text output captured. Past ``timeout_s`` it is killed with every
    process it started (it runs in a session of its own) and an AssertionError shows the end of its output."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except BaseException as err:  # the timeout, or an interrupt (the terminal's Ctrl-C does not reach another session)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
        if isinstance(err, subprocess.TimeoutExpired):
            started = " ".join(map(str, command[:3]))
            raise AssertionError(f"{started} ... did not finish within {timeout_s} s and was killed:\n{stdout[-4000:]}\n{stderr[-8000:]}") from None
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path | Sequence[Path], *args: str, profile: Path = DEFAULT_PROFILE, cores: int = 2) -> list[str]:
    """``snakemake --cores N`` on the repository's Snakefile inside ``workdir``, as an argument list;
    several config files are merged in order (a base config and its overlays)."""
    configfiles = [configfile] if isinstance(configfile, (str, Path)) else list(configfile)
    return [
        str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", str(profile), "--configfile", *map(str, configfiles), "--cores", str(cores),
        *MAX_THREADS, *args,
    ]


# One torch thread per job: the tiny model gains nothing from more, and two test workers' runs side by side
# oversubscribe the cores, where torch's threads spin waiting for each other (a 60-step training job of the
# tiny model on the shared 2 cores: 42 s of CPU at 2 threads, 7.9 s at 1). Jobs still run 2 at a time.
MAX_THREADS = ("--max-threads", "1")


def snakemake(workdir: Path, configfile: Path | Sequence[Path], *args: str, check: bool = True, profile: Path = DEFAULT_PROFILE,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``snakemake_command`` (bounded by ``SNAKEMAKE_TIMEOUT_S``); with ``check``, a failure raises with the end of its output."""
    result = run_bounded(snakemake_command(workdir, configfile, *args, profile=profile), env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_rules(workdir: Path, configfile: Path | Sequence[Path], *args: str) -> dict[str, int]:
    """Rules (and job counts) a dry run would execute; empty when there is nothing to do."""
    out = snakemake(workdir, configfile, "--dry-run", *args)
    return job_counts(out.stdout + out.stderr)


def job_counts(text: str) -> dict[str, int]:
    """Rules (and job counts) of the job table that Snakemake prints before a run or a dry run; empty when
    it has nothing to do."""
    if "Nothing to be done" in text:
        return {}
    jobs, table = {}, False
    for line in text.splitlines():
        fields = line.split()
        if fields[:2] == ["job", "count"]:
            table = True
        elif table and len(fields) == 2 and fields[1].isdigit() and fields[0] != "total":
            jobs[fields[0]] = int(fields[1])
        elif table and fields and fields[0] == "total":
            break
    return jobs


DOCS = [
    ("ds1", "Sea level Venice", "Hourly sea level from the Venice tide gauge, 1990-2024."),
    ("ds2", "Sea level Baltic", "Satellite altimetry sea level anomalies over the Baltic Sea."),
    ("ds3", "Snow depth Alps", "Daily snow depth at Alpine weather stations."),
    ("ds4", "CO2 flux boreal", "Eddy covariance CO2 flux over a boreal forest in Finland."),
    ("ds5", "Methane flux", "Methane flux from a Siberian wetland tower."),
    ("ds6", "River discharge Po", "Daily discharge of the Po river at Pontelagoscuro."),
]
RATINGS = [
    ("q1", "sea level venice", "ds1", 9), ("q1", "sea level venice", "ds2", 4),
    ("q2", "snow alps", "ds3", 8), ("q2", "snow alps", "ds6", 1),
    ("q3", "co2 flux forest", "ds4", 10), ("q3", "co2 flux forest", "ds5", 3),
    ("q4", "po river discharge", "ds6", 7), ("q4", "po river discharge", "ds1", 0),
]


def tiny_config(k=5, methods=(), base_model="bundled:smollm2-135m-instruct", budgets=("all",)):
    """A config over the tiny collection; with no methods it stops after BM25 and evaluation."""
    hyper = {
        "learning_rate": 1.0e-3, "epochs": 1, "batch_size": 2, "gradient_accumulation": 1, "max_length": 128,
        "save_steps": 2, "logging_steps": 1, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
    }
    return {
        "datasets": {
            "tiny": {
                "format": "ratings",
                "sources": {"documents": "input/documents.csv", "ratings": "input/ratings.csv"},
                "options": {"grades": [5, 7, 9]},
                "relevance_threshold": 1,
            }
        },
        "split": {"seed": 1, "dev": 0, "test": 2},
        "retrieve": {"k1": 1.2, "b": 0.75, "stemmer": "english", "stopwords": "en", "k": k},
        "evaluate": {"measures": ["nDCG@10", "RR@10", "AP"]},
        "model": {"base": base_model, "dtype": "auto"},
        "methods": list(methods),
        "budgets": list(budgets),
        "train": {
            "seed": 1, "negatives_per_positive": 1, "max_positives_per_query": 1, "pairs_per_query": 1,
            "defaults": hyper, "methods": {"dpo": {"beta": 0.1}, "dpo_pairs": {"beta": 0.1}},
        },
        "rerank": {"depth": 3, "batch_size": 4, "max_length": 128},
        "explain": {
            "queries": "all", "top_documents": 2, "exact_levels": 1, "keywords": 3, "ks": [1, 2], "random_sets": 2,
            "deletion_steps": 4, "normalisation": "candidate_std", "batch_size": 16, "pairs_per_call": 16, "seed": 1,
        },
        "rationale": {"generator": base_model, "max_new_tokens": 8, "batch_size": 4},
        "report": {"bootstrap_resamples": 200, "alpha": 0.05, "seed": 1},
    }


def write_tiny_collection(workdir: Path) -> None:
    """Six dataset records and four rated queries as input/{documents,ratings}.csv."""
    (workdir / "input").mkdir(exist_ok=True)
    pd.DataFrame(DOCS, columns=["doc_id", "title", "text"]).to_csv(workdir / "input" / "documents.csv", index=False)
    pd.DataFrame(RATINGS, columns=["query_id", "query", "doc_id", "rating"]).to_csv(workdir / "input" / "ratings.csv", index=False)

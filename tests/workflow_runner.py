"""Run the real Snakemake workflow on a config in a scratch working directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake --cores 2`` on the repository's Snakefile inside ``workdir``."""
    command = [
        str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", str(REPO / "profiles" / "default"), "--configfile", str(configfile), "--cores", "2", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_rules(workdir: Path, configfile: Path, *args: str) -> dict[str, int]:
    """Rules (and job counts) a dry run would execute; empty when there is nothing to do."""
    out = snakemake(workdir, configfile, "--dry-run", *args)
    text = out.stdout + out.stderr
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

"""bench/gpu_check.py, the one script a lent GPU runs: its CPU-safe parts run here (--dry-run, a tiny shape)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_checks_training_part_runs_a_step_on_the_cpu_and_reports_it(tmp_path):
    """One sft step of the tiny shape through bench/training_memory.py, as the check runs each method on a GPU; the
    summary names the part and its table row (the estimate; no peak: torch reports none on the CPU)."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--parts", "train-8b", "--out", str(tmp_path),
                           "--total-limit", "400", "--train-limit", "300"], cwd=REPO, capture_output=True, text=True, timeout=450)
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert "train-tiny  ok" in summary and "1 of 1 steps ran" in summary
    row = next(line.split() for line in summary.splitlines() if line.startswith("  sft "))
    assert row[:3] == ["sft", "bf16", "off"] and float(row[3]) > 0 and row[4:6] == ["–", "–"]  # estimate GB; no peak on the CPU

"""The runner of the suite's Snakemake subprocesses: a hang fails its test, and leaves no process behind."""

import sys
import time

import psutil
import pytest

from workflow_runner import run_bounded

# Starts a child (as Snakemake starts its jobs), prints the child's pid, then hangs.
HANGS = "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(child.pid, flush=True); time.sleep(600)"


def test_a_finished_run_returns_its_exit_status_and_output():
    result = run_bounded([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_a_run_past_its_timeout_fails_with_its_output_and_its_processes_killed():
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"did not finish within 2 s and was killed") as err:
        run_bounded([sys.executable, "-c", HANGS], timeout_s=2)
    assert time.monotonic() - started < 60
    child = int(str(err.value).splitlines()[1])  # the output's first line: the child's pid
    deadline = time.monotonic() + 10
    while not ended(child):
        assert time.monotonic() < deadline, f"the hung command's child {child} still runs"
        time.sleep(0.1)


def ended(pid: int) -> bool:
    """Whether ``pid`` is gone, or dead and waiting to be reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

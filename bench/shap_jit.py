"""CPU seconds of SHAP attributions with shap's numba helpers compiled (numba's default) and interpreted.

shap's PartitionExplainer JIT-compiles its helpers (mask building, credit splitting) on their
first call in a process; the explain job sets NUMBA_DISABLE_JIT=1 so that they run as Python.
Each setting runs in its own process (numba reads the switch at import): the first explanation
of a small pair (process start and imports excluded: the compilation happens there), then
``--pairs`` pairs of random claims and documents under a scorer that costs nothing, so only
shap's own work is timed. The attributions of both settings are compared value for value.

    .venv/bin/python bench/shap_jit.py [--pairs 200] [--exact-levels 1]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = "sea ice glacier melt arctic ocean level tide gauge venice snow alps depth flux forest methane river".split()


class FreeScorer:
    """A deterministic score of a pair's lengths: no model, so the time is shap's."""

    def score_pairs(self, queries, documents, **_):
        return np.array([np.sin(len(q) * 0.37 + len(d) * 0.011) for q, d in zip(queries, documents)], dtype=np.float64)


def run(pairs: int, exact_levels: int, out: Path) -> dict:
    from rerank_audit.explain.attribution import explain_pairs, owen_values

    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(WORDS, 12)) for _ in range(pairs)]
    documents = [" ".join(rng.choice(WORDS, rng.integers(20, 120))) for _ in range(pairs)]
    started = time.process_time()
    first = explain_pairs(FreeScorer(), ["sea level venice"], ["Hourly sea level from the Venice tide gauge"], exact_levels=1)
    first_s = time.process_time() - started
    started = time.process_time()
    many = explain_pairs(FreeScorer(), queries, documents, exact_levels=exact_levels)
    exact = owen_values(FreeScorer(), queries[0], " ".join(documents[0].split()[:20]))
    many_s = time.process_time() - started
    out.write_bytes(pickle.dumps((first, many, exact)))
    return {"first_s": round(first_s, 2), "pairs_s": round(many_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--exact-levels", type=int, default=1)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one setting, its tables to this file
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.pairs, args.exact_levels, Path(args.run))))
        return
    with tempfile.TemporaryDirectory() as folder:
        tables, rows = {}, {}
        for name, disable in (("compiled", "0"), ("interpreted", "1")):
            out = Path(folder) / f"{name}.pkl"
            command = [sys.executable, __file__, "--run", str(out), "--pairs", str(args.pairs), "--exact-levels", str(args.exact_levels)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ | {"NUMBA_DISABLE_JIT": disable})
            rows[name], tables[name] = json.loads(done.stdout.splitlines()[-1]), pickle.loads(out.read_bytes())
    same = all(a.equals(b) for a, b in zip(tables["compiled"][:2], tables["interpreted"][:2]))
    same = same and np.array_equal(tables["compiled"][2], tables["interpreted"][2])
    print(f"{'':12} {'first pair':>10} {args.pairs:>5} pairs (CPU s, exact_levels {args.exact_levels})")
    for name, row in rows.items():
        print(f"{name:12} {row['first_s']:>10} {row['pairs_s']:>11}")
    print("attributions equal bit for bit:", same)


if __name__ == "__main__":
    main()

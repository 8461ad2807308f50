# rerank-audit: does an LLM re-ranker that scores well reason about relevance?
# Stages mirror workflow/rules/*.smk; every intermediate is a Parquet file under results/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/retrieve.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/rerank.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/control.smk"


# Run by Snakemake itself, never submitted to a cluster: the target, and the tiny rules that
# would wait longer in a queue than they run (a download also needs the login node's network).
localrules:
    all,
    download,
    split,


rule all:
    input:
        final_outputs(),
    default_target: True

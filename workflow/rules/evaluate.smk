rule evaluate:
    input:
        runs=runs_to_evaluate,
        faithfulness=faithfulness_tables,
        rationales=rationale_tables,
        qrels="results/{dataset}/ingest/qrels.parquet",
        splits="results/{dataset}/split/splits.parquet",
    output:
        per_query="results/{dataset}/evaluate/per_query.parquet",
        explain_per_query="results/{dataset}/evaluate/explain_per_query.parquet",
        metrics="results/{dataset}/evaluate/metrics.parquet",
        table=report("results/{dataset}/evaluate/metrics.md", caption="../report/metrics.rst", category="Ranking"),
    params:
        **named_params(
            measures=config["evaluate"]["measures"],
            relevance_threshold=relevance_threshold,
        ),
    log:
        "logs/{dataset}/evaluate.log",
    benchmark:
        "benchmarks/{dataset}/evaluate.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/evaluate.py"

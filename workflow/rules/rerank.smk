rule rerank:
    input:
        scoring_model,
        run="results/{dataset}/retrieve/bm25.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        splits="results/{dataset}/split/splits.parquet",
    output:
        run="results/{dataset}/rerank/{method}/{budget}/run.parquet",
        trec="results/{dataset}/rerank/{method}/{budget}/run.trec",
    params:
        **named_params(**scorer_params("rerank"), depth=config["rerank"]["depth"]),
    log:
        "logs/{dataset}/rerank/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/rerank/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=memory_mb(BASE_MODEL, planned_tokens("rerank")),
        runtime=120,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/rerank.py"

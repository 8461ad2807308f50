rule retrieve:
    input:
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        splits="results/{dataset}/split/splits.parquet",
        # A dataset with models_from: the splits its models were trained on, to check before re-ranking.
        model_splits=model_splits,
    output:
        run="results/{dataset}/retrieve/bm25.parquet",
        trec="results/{dataset}/retrieve/bm25.trec",
    params:
        **named_params(
            k1=config["retrieve"]["k1"],
            b=config["retrieve"]["b"],
            stemmer=config["retrieve"]["stemmer"],
            stopwords=config["retrieve"]["stopwords"],
            k=config["retrieve"]["k"],
            candidates=candidate_pool,
            models_from=models_from,
        ),
    log:
        "logs/{dataset}/retrieve.log",
    benchmark:
        "benchmarks/{dataset}/retrieve.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/retrieve.py"

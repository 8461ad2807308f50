# Shortcut probes (issue 24): controlled edits of the test queries' documents and how each
# method's score moves, against BM25's known behaviour (src/rerank_audit/probe/).


rule probe:
    input:
        scoring_model,
        reranked="results/{dataset}/rerank/{method}/{budget}/run.parquet",
        run="results/{dataset}/retrieve/bm25.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        splits="results/{dataset}/split/splits.parquet",
    output:
        probes="results/{dataset}/probe/{method}/{budget}/probes.parquet",
    params:
        **named_params(
            **scorer_params("rerank"),
            depth=config["rerank"]["depth"],  # the head each method re-scored: the probed documents
            marker=control_marker,  # a control's planted word: the marker probe
            relevance_threshold=relevance_threshold,
            **config["probe"],
        ),
    log:
        "logs/{dataset}/probe/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/probe/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=memory_mb(BASE_MODEL, planned_tokens("rerank")),
        runtime=120,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/probe.py"


# The lexical reference: BM25 (the dataset's retrieve settings) on the first-stage head, cut at
# rerank.depth as the methods re-rank it. Budget "0", as every untrained row.
rule probe_bm25:
    input:
        run="results/{dataset}/retrieve/bm25.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        splits="results/{dataset}/split/splits.parquet",
    output:
        probes=f"results/{{dataset}}/probe/bm25/{UNTRAINED_BUDGET}/probes.parquet",
    params:
        **named_params(
            method="bm25",
            budget=UNTRAINED_BUDGET,
            k1=config["retrieve"]["k1"],
            b=config["retrieve"]["b"],
            stemmer=config["retrieve"]["stemmer"],
            stopwords=config["retrieve"]["stopwords"],
            depth=config["rerank"]["depth"],
            marker=control_marker,
            relevance_threshold=relevance_threshold,
            **config["probe"],
        ),
    log:
        f"logs/{{dataset}}/probe/bm25/{UNTRAINED_BUDGET}.log",
    benchmark:
        f"benchmarks/{{dataset}}/probe/bm25/{UNTRAINED_BUDGET}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/probe.py"

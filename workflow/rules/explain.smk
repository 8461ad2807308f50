rule explain:
    input:
        scoring_model,
        run="results/{dataset}/rerank/{method}/{budget}/run.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        splits="results/{dataset}/split/splits.parquet",
    output:
        attributions="results/{dataset}/explain/{method}/{budget}/attributions.parquet",
        keywords="results/{dataset}/explain/{method}/{budget}/keywords.parquet",
        faithfulness="results/{dataset}/explain/{method}/{budget}/faithfulness.parquet",
    params:
        **named_params(
            **scorer_params("explain"),
            depth=config["rerank"]["depth"],  # the head each method re-scored: where its top and bottom are
            marker=control_marker,  # a control's planted word: its comprehensiveness alone
            **EXPLAIN | {"queries": explain_queries},
        ),
    log:
        "logs/{dataset}/explain/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/explain/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=memory_mb(BASE_MODEL, planned_tokens("explain")),
        runtime=240,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/explain.py"


rule rationale:
    input:
        generator_input,
        keywords="results/{dataset}/explain/{method}/{budget}/keywords.parquet",
        run="results/{dataset}/rerank/{method}/{budget}/run.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
    output:
        rationales="results/{dataset}/rationale/{method}/{budget}/rationales.parquet",
    params:
        **named_params(
            generator=RATIONALE_GENERATOR,
            dtype=config["model"]["dtype"],
            max_new_tokens=config["rationale"]["max_new_tokens"],
            batch_size=config["rationale"]["batch_size"],
            show_decision=config["rationale"]["show_decision"],
            depth=config["rerank"]["depth"],
            top_documents=config["explain"]["top_documents"],
            bottom_documents=config["explain"]["bottom_documents"],
        ),
    log:
        "logs/{dataset}/rationale/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/rationale/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=memory_mb(RATIONALE_GENERATOR, PLANNED_TOKENS, copies=1),
        runtime=120,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/rationale.py"


# The checks of the rationales, apart from writing them: rationale comprehensiveness needs the
# method's scorer (the writer is another model), and a change of the checks or of the random
# baseline re-scores without re-generating. Its output is the table evaluate already reads.
rule rationale_metrics:
    input:
        scoring_model,
        rationales="results/{dataset}/rationale/{method}/{budget}/rationales.parquet",
        keywords="results/{dataset}/explain/{method}/{budget}/keywords.parquet",
        run="results/{dataset}/rerank/{method}/{budget}/run.parquet",
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
    output:
        metrics="results/{dataset}/rationale/{method}/{budget}/rationale_metrics.parquet",
    params:
        **named_params(
            **scorer_params("explain"),
            pairs_per_call=config["explain"]["pairs_per_call"],
            depth=config["rerank"]["depth"],
            top_documents=config["explain"]["top_documents"],
            bottom_documents=config["explain"]["bottom_documents"],
            random_sets=config["explain"]["random_sets"],
            seed=config["explain"]["seed"],
            normalisation=config["explain"]["normalisation"],
        ),
    log:
        "logs/{dataset}/rationale_metrics/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/rationale_metrics/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=memory_mb(BASE_MODEL, planned_tokens("explain")),
        runtime=60,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/rationale_metrics.py"

rule convert_base_model:
    output:
        directory(f"{MODELS_DIR}/{{bundled}}"),
    log:
        "logs/convert_base_model/{bundled}.log",
    benchmark:
        "benchmarks/convert_base_model/{bundled}.tsv"
    wildcard_constraints:
        bundled="[A-Za-z0-9][A-Za-z0-9_.-]*",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/convert_base_model.py"


rule training_data:
    input:
        base_model_input,
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        splits="results/{dataset}/split/splits.parquet",
        run="results/{dataset}/retrieve/bm25.parquet",
    output:
        sft_examples="results/{dataset}/train/{budget}/sft_examples.parquet",
        answer_pairs="results/{dataset}/train/{budget}/answer_pairs.parquet",
        document_pairs="results/{dataset}/train/{budget}/document_pairs.parquet",
        query_examples="results/{dataset}/train/{budget}/query_examples.parquet",
        lce_groups="results/{dataset}/train/{budget}/lce_groups.parquet",
    params:
        **named_params(
            base_model=BASE_MODEL,
            seed=config["train"]["seed"],
            negatives_per_positive=config["train"]["negatives_per_positive"],
            max_positives_per_query=config["train"]["max_positives_per_query"],
            pairs_per_query=config["train"]["pairs_per_query"],
            negatives_per_group=config["train"]["negatives_per_group"],
            unjudged_negatives=config["train"].get("unjudged_negatives", False),
            relevance_threshold=relevance_threshold,
            qlm_template=dataset_qlm_template,
        ),
    log:
        "logs/{dataset}/training_data/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/training_data/{budget}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/training_data.py"


rule train:
    input:
        base_model_input,
        # train.selection: the dev queries' tables (none without it).
        unpack(selection_inputs),
        data=training_table,
    output:
        # The folder holds the model and the checkpoints; only this file (written last) is
        # declared, so Snakemake never clears the checkpoints of an interrupted training.
        model="results/{dataset}/models/{method}/{budget}/training_config.json",
    params:
        **named_params(
            base_model=BASE_MODEL,
            training=training_settings,
            seed=config["train"]["seed"],
            template=scoring_template,
            scoring=training_scoring,
            selection=config["train"].get("selection"),
            relevance_threshold=relevance_threshold,
        ),
    log:
        "logs/{dataset}/train/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/train/{method}/{budget}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/train.py"


rule training_fit:
    input:
        base_model_input,
        # training_config.json, written last by rule train (a one-item list: scoring_model).
        model=scoring_model,
        data=training_table,
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
    output:
        fit="results/{dataset}/models/{method}/{budget}/training_fit.json",
    params:
        **named_params(**scorer_params("rerank")),
    log:
        "logs/{dataset}/training_fit/{method}/{budget}.log",
    benchmark:
        "benchmarks/{dataset}/training_fit/{method}/{budget}.tsv"
    threads: 2
    resources:
        # the trained and the untrained scorer
        mem_mb=memory_mb(BASE_MODEL, planned_tokens("rerank"), copies=2),
        runtime=120,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/training_fit.py"

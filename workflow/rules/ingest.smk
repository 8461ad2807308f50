rule download:
    output:
        "resources/downloads/{dataset}/{role}/{filename}",
    params:
        **named_params(
            spec=download_spec,
        ),
    log:
        "logs/{dataset}/download/{role}/{filename}.log",
    benchmark:
        "benchmarks/{dataset}/download/{role}/{filename}.tsv"
    retries: 2
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/download.py"


rule ingest:
    input:
        unpack(source_files),
    output:
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
    params:
        **named_params(
            format=dataset_format,
            options=dataset_options,
        ),
    # Controls are derived from their source's tables (rule derive_control), not read.
    wildcard_constraints:
        dataset=one_of(SOURCED),
    log:
        "logs/{dataset}/ingest.log",
    benchmark:
        "benchmarks/{dataset}/ingest.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/ingest.py"


rule split:
    input:
        qrels="results/{dataset}/ingest/qrels.parquet",
    output:
        splits="results/{dataset}/split/splits.parquet",
    params:
        **named_params(
            seed=config["split"]["seed"],
            dev=config["split"]["dev"],
            test=config["split"]["test"],
            relevance_threshold=relevance_threshold,
        ),
    log:
        "logs/{dataset}/split.log",
    benchmark:
        "benchmarks/{dataset}/split.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/split.py"

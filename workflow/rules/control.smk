# Known-answer controls: datasets derived from another with a planted marker word
# (src/rerank_audit/data/control.py); every other stage treats them like any dataset.


# A control re-orders exactly its source's candidates (rule derive_control writes them, with
# the test copies): BM25 over the marked corpus would shift with document length, so the
# aligned and flipped pools would differ.
ruleorder: derive_control > retrieve


rule derive_control:
    input:
        unpack(control_source),
    output:
        corpus="results/{dataset}/ingest/corpus.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        placement="results/{dataset}/ingest/control.parquet",
        record="results/{dataset}/ingest/control.json",
        run="results/{dataset}/retrieve/bm25.parquet",
        trec="results/{dataset}/retrieve/bm25.trec",
    wildcard_constraints:
        dataset=one_of(CONTROLS),
    params:
        **named_params(
            control=control_spec,
            relevance_threshold=relevance_threshold,
        ),
    log:
        "logs/{dataset}/derive_control.log",
    benchmark:
        "benchmarks/{dataset}/derive_control.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/derive_control.py"


rule control_report:
    input:
        unpack(control_version_tables),
    output:
        table="results/{dataset}/control/shortcut.parquet",
        summary=report("results/{dataset}/control/summary.md", caption="../report/control.rst", category="Controls"),
        figure=report("results/{dataset}/control/aligned_vs_flipped.png", caption="../report/control.rst", category="Controls"),
    wildcard_constraints:
        dataset=one_of(CONTROL_PAIRS),
    params:
        **named_params(
            control=control_spec,
            flipped=flipped_partner,
            methods=config["methods"],
            primary_measures=primary_measures,
            alpha=config["report"]["alpha"],
            k=config["explain"]["keywords"],
            bootstrap=config["report"]["bootstrap_resamples"],
            seed=config["report"]["seed"],
        ),
    log:
        "logs/{dataset}/control_report.log",
    benchmark:
        "benchmarks/{dataset}/control_report.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/control_report.py"

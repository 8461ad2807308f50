rule report:
    input:
        per_query="results/{dataset}/evaluate/per_query.parquet",
        explain_per_query="results/{dataset}/evaluate/explain_per_query.parquet",
        splits="results/{dataset}/split/splits.parquet",
        queries="results/{dataset}/ingest/queries.parquet",
        attributions=attribution_tables,
        rationales=rationale_texts,
        rationale_metrics=rationale_tables,
        runs=reranked_runs,
        # Separation and calibration: BM25's run (its heads and scores) and the judgements.
        bm25_run="results/{dataset}/retrieve/bm25.parquet",
        qrels="results/{dataset}/ingest/qrels.parquet",
        training_fits=training_fits,
        # train.selection: each model's training_config.json, with its dev curves.
        **({"training_configs": training_configs} if SELECTION else {}),
        **({"probes": probe_tables} if PROBING else {}),
    output:
        stats="results/{dataset}/report/summary.parquet",
        summary=report("results/{dataset}/report/summary.md", caption="../report/summary.rst", category="Summary"),
        learning_curves=report("results/{dataset}/report/learning_curves.png", caption="../report/learning_curves.rst", category="Figures"),
        scatter=report("results/{dataset}/report/accuracy_vs_faithfulness.png", caption="../report/accuracy_vs_faithfulness.rst", category="Figures"),
        differences=report("results/{dataset}/report/ndcg_differences.png", caption="../report/ndcg_differences.rst", category="Figures"),
        examples=report(
            directory("results/{dataset}/report/examples"),
            patterns=["{name}.png"],
            caption="../report/examples.rst",
            category="Examples",
        ),
        **(
            {
                "probe_tests": "results/{dataset}/report/probes.parquet",
                "probes": report("results/{dataset}/report/probes.md", caption="../report/probes.rst", category="Shortcut probes"),
                "probe_figure": report("results/{dataset}/report/probes.png", caption="../report/probes.rst", category="Shortcut probes"),
                "shortcut": report("results/{dataset}/report/accuracy_vs_shortcut.png", caption="../report/accuracy_vs_shortcut.rst", category="Shortcut probes"),
            }
            if PROBING
            else {}
        ),
        verdict_auc="results/{dataset}/report/verdict_auc.parquet",
        verdict_table=report("results/{dataset}/report/verdict_auc.md", caption="../report/verdict_auc.rst", category="Summary"),
        accuracy_vs_explanation="results/{dataset}/report/accuracy_vs_explanation.parquet",
        accuracy_vs_explanation_rho="results/{dataset}/report/accuracy_vs_explanation_rho.parquet",
        accuracy_vs_explanation_table=report(
            "results/{dataset}/report/accuracy_vs_explanation.md", caption="../report/accuracy_vs_explanation.rst", category="Summary"
        ),
        separation="results/{dataset}/report/separation.parquet",
        separation_table=report("results/{dataset}/report/separation.md", caption="../report/separation.rst", category="Summary"),
        calibration="results/{dataset}/report/calibration.parquet",
        calibration_table=report("results/{dataset}/report/calibration.md", caption="../report/calibration.rst", category="Summary"),
        calibration_figure=report("results/{dataset}/report/calibration.png", caption="../report/calibration.rst", category="Figures"),
        config=report("results/{dataset}/report/config.yaml", caption="../report/config.rst", category="Configuration"),
        **({"dev_curves": report("results/{dataset}/report/dev_curves.png", caption="../report/dev_curves.rst", category="Figures")} if SELECTION else {}),
    params:
        **named_params(
            methods=REPORTED_METHODS,
            untrained=UNTRAINED_OF,
            ranking_measures=dataset_measures,
            primary_measures=primary_measures,
            bootstrap=config["report"]["bootstrap_resamples"],
            alpha=config["report"]["alpha"],
            equivalence_margin=config["report"]["equivalence_margin"],
            seed=config["report"]["seed"],
            k=max(config["explain"]["ks"]),
            top_documents=config["explain"]["top_documents"],
            depth=config["rerank"]["depth"],
            relevance_threshold=relevance_threshold,
            separation_buckets=config["report"]["separation_buckets"],
        ),
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "benchmarks/{dataset}/report.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rerank-audit.yaml"
    script:
        "../scripts/report.py"

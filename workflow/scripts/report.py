import json
from pathlib import Path

import pandas as pd
import yaml

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.evaluation import plots
from rerank_audit.evaluation.accuracy_vs_explanation import accuracy_vs_explanation, accuracy_vs_explanation_markdown
from rerank_audit.evaluation.calibration import calibration_figure, calibration_markdown, calibration_table, standardised_heads
from rerank_audit.evaluation.instruments import instruments_markdown, instruments_table
from rerank_audit.evaluation.probe_summary import probes_markdown
from rerank_audit.evaluation.probes import accuracy_vs_shortcut, compare_with_reference, probe_figure, probe_tests
from rerank_audit.evaluation.separation import bm25_separation, gain_by_separation, separation_markdown
from rerank_audit.evaluation.statistics import compare_methods
from rerank_audit.evaluation.summary import summary_markdown
from rerank_audit.evaluation.verdict import verdict_auc, verdict_markdown
from rerank_audit.io import atomic_path, read_table, write_table

log = log_to(snakemake.log[0])
p, out = snakemake.params, snakemake.output
per_query = read_table(snakemake.input.per_query, schemas.PER_QUERY_METRICS)
explained = read_table(snakemake.input.explain_per_query, schemas.PER_QUERY_METRICS)
splits = read_table(snakemake.input.splits, schemas.SPLITS)
budget_sizes = {"all": int((splits.split == "train").sum())}
options = dict(n_resamples=p.bootstrap, seed=p.seed, alpha=p.alpha, untrained=p.untrained)
# Ranking and explainability measures are separate Holm families; of the ranking measures
# only the primary ones are tested, the rest get means and confidence intervals.
stats = pd.concat(
    [
        compare_methods(per_query, measures=p.ranking_measures, primary=p.primary_measures, equivalence_margin=p.equivalence_margin, **options),
        compare_methods(explained, **options),
    ],
    ignore_index=True,
)
write_table(stats, out.stats, schemas.from_frame(stats))
# Summary columns: the primary measures, then AP when measured (a full-depth view); metrics.md has them all.
columns = list(dict.fromkeys([*p.primary_measures, *[m for m in ("AP",) if m in p.ranking_measures]]))
training = [json.loads(Path(path).read_text()) for path in snakemake.input.training_fits]
# train.selection: each model's training_config.json (grid, dev curves, choice), its budget from its folder.
selections = [json.loads(Path(path).read_text()) | {"budget": Path(path).parent.name} for path in snakemake.input.get("training_configs", [])]
# The writer's verdict as a probability: its AUC against each method's decision, with and without the explanation.
dataset = snakemake.wildcards.dataset
rationale_pairs = [read_table(path, schemas.RATIONALE_METRICS) for path in snakemake.input.rationale_metrics]
rationale_pairs = pd.concat(rationale_pairs, ignore_index=True) if rationale_pairs else pd.DataFrame(columns=schemas.RATIONALE_METRICS.names)
verdict = verdict_auc(rationale_pairs, dataset, n_resamples=p.bootstrap, seed=p.seed)
write_table(verdict, out.verdict_auc, schemas.from_frame(verdict))
with atomic_path(out.verdict_table) as tmp:
    tmp.write_text(verdict_markdown(verdict, dataset, methods=p.methods, budget_sizes=budget_sizes))
# Do the methods that rank well explain well? Per method with CIs, and the correlation across methods.
profiles, correlations = accuracy_vs_explanation(per_query, explained, rationale_pairs, p.primary_measures[0], dataset,
                                                 n_resamples=p.bootstrap, alpha=p.alpha, seed=p.seed)
write_table(profiles, out.accuracy_vs_explanation, schemas.from_frame(profiles))
write_table(correlations, out.accuracy_vs_explanation_rho, schemas.from_frame(correlations))
with atomic_path(out.accuracy_vs_explanation_table) as tmp:
    tmp.write_text(accuracy_vs_explanation_markdown(profiles, correlations, dataset, methods=p.methods, budget_sizes=budget_sizes))
with atomic_path(out.summary) as tmp:
    tmp.write_text(summary_markdown(stats, explained, methods=p.methods, ranking_measures=columns, primary_measures=p.primary_measures,
                                    budget_sizes=budget_sizes, training=training, selections=selections, verdict_auc=verdict))
faithfulness, accuracy = f"comprehensiveness@{p.k}", p.primary_measures[0]
plots.learning_curves(stats, out.learning_curves, measures=(accuracy, faithfulness), budget_sizes=budget_sizes, methods=p.methods)
plots.accuracy_vs_faithfulness(stats, out.scatter, accuracy=accuracy, faithfulness=faithfulness, budget_sizes=budget_sizes, methods=p.methods)
plots.difference_distributions(per_query, out.differences, measure=accuracy, methods=p.methods, budget_sizes=budget_sizes)
if "dev_curves" in out.keys():  # train.selection: the dev curves of every trained model
    plots.dev_curves(selections, out.dev_curves)

# From the runs and the judgements alone (no new scoring), on the judged documents of each test query's re-ranked head:
# the gain over BM25 by how well BM25 separates relevant from non-relevant (separation.md), and each method's calibration.
qrels = read_table(snakemake.input.qrels, schemas.QRELS)
bm25_run = read_table(snakemake.input.bm25_run, schemas.RUN)
runs = [read_table(path, schemas.RUN) for path in snakemake.input.runs]
test_queries = splits.query_id[splits.split == "test"].tolist()
separation = bm25_separation(bm25_run, qrels, test_queries, p.depth, p.relevance_threshold)
gains = gain_by_separation(per_query, separation, accuracy, p.separation_buckets, alpha=p.alpha, n_resamples=p.bootstrap, seed=p.seed)
write_table(gains, out.separation, schemas.from_frame(gains))
with atomic_path(out.separation_table) as tmp:
    tmp.write_text(separation_markdown(gains, separation, dataset, accuracy, p.separation_buckets, methods=p.methods, budget_sizes=budget_sizes))
scores = standardised_heads([bm25_run, *runs], qrels, test_queries, p.depth, p.relevance_threshold)
calibration = calibration_table(scores, dataset, n_resamples=p.bootstrap, seed=p.seed)
write_table(calibration, out.calibration, schemas.from_frame(calibration))
with atomic_path(out.calibration_table) as tmp:
    tmp.write_text(calibration_markdown(calibration, dataset, methods=p.methods, budget_sizes=budget_sizes))
calibration_figure(scores, calibration, out.calibration_figure, methods=p.methods)

# Shortcut probes (unless probe.probes is []): each method's response (against none, and against BM25's), table and figures.
# With them off, a probe table of an earlier run would read as this run's: it goes (the probe stage's tables stay).
PROBE_OUTPUTS = ("probes.parquet", "probes.md", "probes.png", "accuracy_vs_shortcut.png")
if "probes" not in snakemake.input.keys():
    for name in PROBE_OUTPUTS:
        stale = Path(out.summary).parent / name
        if stale.exists():
            log.info("probes are off: removing %s of an earlier run", stale)
            stale.unlink()
else:
    probes = pd.concat([read_table(path, schemas.PROBES) for path in snakemake.input.probes], ignore_index=True).assign(dataset=dataset)
    probe_options = dict(alpha=p.alpha, n_resamples=p.bootstrap, seed=p.seed)
    tests, against = probe_tests(probes, **probe_options), compare_with_reference(probes, **probe_options)
    write_table(tests, out.probe_tests, schemas.from_frame(tests))
    with atomic_path(out.probes) as tmp:
        # The stuffing probe beside the attributions' lexical excess: do white box and black box agree?
        white_black = instruments_table(stats, tests[tests.dataset == dataset])
        tmp.write_text(probes_markdown(tests, against, dataset, methods=p.methods, budget_sizes=budget_sizes) + "\n" + instruments_markdown(white_black, p.alpha))
    probe_figure(tests, out.probe_figure, methods=p.methods)
    accuracy_vs_shortcut(stats, tests, out.shortcut, accuracy=accuracy, methods=p.methods)

# One example page per method and budget, all on the same query: the first explained test query.
queries = read_table(snakemake.input.queries, schemas.QUERIES).set_index("query_id").text
for attributions_path, rationales_path, run in zip(snakemake.input.attributions, snakemake.input.rationales, runs):
    attributions = read_table(attributions_path, schemas.ATTRIBUTIONS)
    rationales = read_table(rationales_path, schemas.RATIONALES)
    if attributions.empty:
        continue
    method, budget = attributions.method.iloc[0], attributions.budget.iloc[0]
    query_id = attributions.query_id.iloc[0]
    documents = plots.attribution_documents(attributions, run, method, budget, query_id, top=p.top_documents)
    texts = dict(zip(rationales.doc_id[rationales.query_id == query_id], rationales.rationale[rationales.query_id == query_id]))
    title = f"{method} (budget {budget}): query {query_id}"
    plots.example_page(queries[query_id], documents, texts, Path(out.examples) / f"{method}-{budget}.png", title=title)
# The configuration that made this report, as Snakemake resolved it (config files and --config).
with atomic_path(out.config) as tmp:
    tmp.write_text(yaml.safe_dump(snakemake.config, sort_keys=False, allow_unicode=True))
log.info("\n%s", Path(out.summary).read_text())

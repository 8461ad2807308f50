import pandas as pd

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.evaluation import controls
from rerank_audit.evaluation.instruments import marker_instruments_markdown, marker_instruments_table
from rerank_audit.evaluation.probes import probe_tests
from rerank_audit.io import atomic_path, read_table, write_table
from rerank_audit.methods import method

log = log_to(snakemake.log[0])
p, inp, out = snakemake.params, snakemake.input, snakemake.output
marker = p.control["marker"]
aligned, flipped = (read_table(path, schemas.PER_QUERY_METRICS) for path in inp.per_query)
shortcut = controls.shortcut_tests(aligned, flipped, measures=p.primary_measures, alpha=p.alpha)
# Explanations of both versions: the marker-carrying documents of each, with its own placement.
pairs, rationales, faithful = [], [], []
for version, placement_path in zip(("aligned", "flipped"), inp.placement):
    placement = read_table(placement_path, schemas.CONTROL_PLACEMENT)
    attributions = pd.concat([read_table(path, schemas.ATTRIBUTIONS) for path in getattr(inp, f"attributions_{version}")], ignore_index=True)
    pairs.append(controls.marker_attribution(attributions, placement, marker, p.k).assign(version=version))
    rationales.append(pd.concat([read_table(path, schemas.RATIONALES) for path in getattr(inp, f"rationales_{version}")], ignore_index=True).assign(version=version))
    faithful.append(
        controls.pair_faithfulness(
            pd.concat([read_table(path, schemas.FAITHFULNESS) for path in getattr(inp, f"faithfulness_{version}")], ignore_index=True),
            pd.concat([read_table(path, schemas.RATIONALE_METRICS) for path in getattr(inp, f"rationale_metrics_{version}")], ignore_index=True),
        ).assign(version=version)
    )
pairs, rationales, faithful = (pd.concat(frames, ignore_index=True) for frames in (pairs, rationales, faithful))
# The two versions explain different test documents of the same queries: keep them apart by query id.
def versioned(frame):
    return frame.drop(columns="version").assign(query_id=frame.version + "/" + frame.query_id)


pairs, rationales, faithful = versioned(pairs), versioned(rationales), versioned(faithful)
attribution = controls.attribution_summary(pairs, rationales, marker, faithful)
table = controls.control_table(shortcut, attribution)
write_table(table, out.table, schemas.from_frame(table))
untrained = [m for m in p.methods if not method(m).trained]
between = controls.simulatability_between(pairs.merge(faithful, on=[*controls.KEYS, "query_id", "doc_id"], how="left"), untrained, p.alpha)
sections = [controls.between_markdown(between, p.alpha)]
if "probes" in inp.keys():  # the aligned control's marker-insertion probe beside the marker's attribution share
    probes = pd.concat([read_table(path, schemas.PROBES) for path in inp.probes], ignore_index=True).assign(dataset=snakemake.wildcards.dataset)
    tests = probe_tests(probes, alpha=p.alpha, n_resamples=p.bootstrap, seed=p.seed)
    sections.append(marker_instruments_markdown(marker_instruments_table(pairs, tests, p.bootstrap, p.seed), p.alpha))
measure = p.primary_measures[0]
with atomic_path(out.summary) as tmp:
    summary = controls.control_markdown(table, p.control, snakemake.wildcards.dataset, p.flipped, measure, p.alpha, methods=p.methods)
    tmp.write_text("\n".join([summary, *filter(None, sections)]))
controls.aligned_vs_flipped(table, out.figure, measure, methods=p.methods)
log.info("\n%s", open(out.summary).read())

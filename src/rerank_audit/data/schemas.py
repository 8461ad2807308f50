"""Arrow schemas of the data model (DESIGN.md); every Parquet table is checked on write."""

import pyarrow as pa

from rerank_audit.data import measures
from rerank_audit.io import OPTIONAL

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string())])
# An optional column (field metadata io.OPTIONAL): adapters that have no such information and
# files written before the column existed lack it; io reads and writes it as null there.
# label: the judgement's original label where the source has one (CLIMATE-FEVER: SUPPORTS,
# REFUTES, NOT_ENOUGH_INFO; the stance probe reads it), null elsewhere.
QRELS = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("relevance", pa.int64()),
        pa.field("label", pa.string(), metadata=OPTIONAL),
    ]
)
# position orders queries inside a split: training budgets take the first b train queries,
# so smaller budgets are nested in larger ones.
SPLITS = pa.schema([("query_id", pa.string()), ("split", pa.string()), ("position", pa.int64())])
# Budget label of runs from methods that see no training queries (bm25, zeroshot).
UNTRAINED_BUDGET = "0"
RUN = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int64()),
        ("method", pa.string()),
        ("budget", pa.string()),
    ]
)
PER_QUERY_METRICS = pa.schema(
    [
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("budget", pa.string()),
        ("split", pa.string()),
        ("query_id", pa.string()),
        ("measure", pa.string()),
        ("value", pa.float64()),
    ]
)
AGGREGATE_METRICS = pa.schema(
    [
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("budget", pa.string()),
        ("split", pa.string()),
        ("measure", pa.string()),
        ("value", pa.float64()),
        ("queries", pa.int64()),
    ]
)
# Training data (training/examples.py). label: 1 = relevant ("yes"), 0 = not ("no").
SFT_EXAMPLES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("label", pa.int64()),
    ]
)
# Document pairs (dpo_pairs, reward) and answer pairs (dpo: chosen_doc_id == rejected_doc_id).
QUERY_EXAMPLES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("document", pa.string()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
    ]
)
# qlm_lce's training groups (training.examples.lce_groups): one row per member, position 0 relevant.
LCE_GROUPS = pa.schema(
    [
        ("group", pa.int64()),
        ("position", pa.int64()),
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("query", pa.string()),
        ("document", pa.string()),
        ("source", pa.string()),
    ]
)

PREFERENCE_PAIRS = pa.schema(
    [
        ("query_id", pa.string()),
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("chosen_doc_id", pa.string()),
        ("rejected_doc_id", pa.string()),
    ]
)
# Explanations (explain/). budget as in RUN, so tables of several budgets concatenate.
# part: "query" | "document"; position: word index within its part (text/words.py).
ATTRIBUTIONS = pa.schema(
    [
        ("method", pa.string()),
        ("budget", pa.string()),
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("part", pa.string()),
        ("position", pa.int64()),
        ("token", pa.string()),
        ("attribution", pa.float64()),
    ]
)
# The writer's log-odds of "relevant" after its rationale, and asked about query and document
# alone (explain/rationale.py verdict_log_odds); optional: tables written before them read as NaN.
VERDICT_COLUMNS = ("verdict_log_odds", "verdict_log_odds_input_only")
VERDICT_LOG_ODDS = [pa.field(name, pa.float64(), metadata=OPTIONAL) for name in VERDICT_COLUMNS]
RATIONALES = pa.schema(
    [
        ("method", pa.string()),
        ("budget", pa.string()),
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int64()),
        ("score", pa.float64()),
        ("keywords", pa.list_(pa.string())),
        ("rationale", pa.string()),
        ("generator", pa.string()),
        *VERDICT_LOG_ODDS,
    ]
)
# Score differences divided by scale (explain/faithfulness.py); one row per pair and k;
# marker_*: a known-answer control's planted word alone (NaN elsewhere).
# simulatability, sign_agreement (+ _random: attributions permuted): per pair, repeated over k (explain/simulatability.py).
FAITHFULNESS = pa.schema(
    [
        ("method", pa.string()),
        ("budget", pa.string()),
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("k", pa.int64()),
        ("score", pa.float64()),
        ("scale", pa.float64()),
        *[(name, pa.float64()) for name in measures.columns("faithfulness")],
    ]
)
# Rationale checks (explain/rationale.py); verdict null when the rationale states none; end:
# "top" or "bottom", the end of the method's re-ranked head the pair was explained from;
# rationale_*: removing the document words the rationale gives as reasons (explain/faithfulness.py).
RATIONALE_METRICS = pa.schema(
    [
        ("method", pa.string()),
        ("budget", pa.string()),
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("end", pa.string()),
        ("relevant", pa.bool_()),
        ("verdict", pa.bool_()),
        ("rationale_words", pa.int64()),
        *[(name, pa.float64()) for name in measures.columns("rationale")],
        *VERDICT_LOG_ODDS,
    ]
)

# Shortcut probes (probe/responses.py): one row per (probe, test query) with a probed pair.
# n_pairs: probed documents (stance: SUPPORTS x REFUTES pairs); spread: the population std of
# the method's scores over the query's re-ranked head (raw score units); delta: mean
# score(edited) - score(original) in spreads (NaN where the spread is 0); overtake_before /
# overtake_after: stuffing's share of (relevant, stuffed) pairs the stuffed document outscores
# (0-1, ties 1/2; NaN for the other probes and without a relevant head document).
PROBES = pa.schema(
    [
        ("method", pa.string()),
        ("budget", pa.string()),
        ("probe", pa.string()),
        ("query_id", pa.string()),
        ("n_pairs", pa.int64()),
        ("spread", pa.float64()),
        ("delta", pa.float64()),
        ("overtake_before", pa.float64()),
        ("overtake_after", pa.float64()),
    ]
)

# Known-answer controls (data/control.py): one row per document of the control's corpus.
# role "train" | "test"; copy_of: for a test query's copy of a document that other queries
# also see, the copied doc_id (null otherwise); position: word index of the marker, -1 without it.
CONTROL_PLACEMENT = pa.schema(
    [
        ("doc_id", pa.string()),
        ("role", pa.string()),
        ("relevant", pa.bool_()),
        ("copy_of", pa.string()),
        ("marker", pa.bool_()),
        ("position", pa.int64()),
    ]
)


def from_frame(frame) -> pa.Schema:
    """The schema pyarrow infers for a pandas table whose columns vary with the config (report statistics)."""
    return pa.Schema.from_pandas(frame, preserve_index=False)

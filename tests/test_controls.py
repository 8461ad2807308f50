"""Known-answer controls: derivation of the marked collection and the audit's control table."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from rerank_audit.config import check_models_from, resolve_controls
from rerank_audit.data.control import derive_control, insert_marker, placement_rates
from rerank_audit.evaluation.controls import attribution_summary, control_markdown, marker_attribution, shortcut_tests, simulatability_between
from rerank_audit.training.examples import preference_pairs

MARKER = "zorblat"


def toy_collection():
    """One training query q1 and one test query q2 with hand-counted groups of documents.

    train relevant: d0..d9 (10); train other: d10..d19 judged, u0 retrieved for q1, z0 seen
    by nobody (12); test relevant: t0..t4 (5); test other: t5..t14 judged, u1 retrieved for
    q2 (11). d10 is judged for q1 and retrieved for q2: q2 gets its own copy, d10~test (test
    other: 12).
    """
    docs = [f"d{i}" for i in range(20)] + [f"t{i}" for i in range(15)] + ["u0", "u1", "z0"]
    corpus = pd.DataFrame({"doc_id": docs, "title": "a title", "text": [f"words of document {d} about sea ice" for d in docs]})
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["arctic sea ice", "antarctic ice shelf"]})
    qrels = pd.DataFrame(
        [("q1", f"d{i}", int(i < 10)) for i in range(20)] + [("q2", f"t{i}", int(i < 5)) for i in range(15)],
        columns=["query_id", "doc_id", "relevance"],
    )
    splits = pd.DataFrame({"query_id": ["q1", "q2"], "split": ["train", "test"], "position": [0, 0]})
    run = pd.DataFrame({"query_id": ["q1", "q2", "q2"], "doc_id": ["u0", "d10", "u1"], "score": [1.0, 2.0, 1.0], "rank": [1, 1, 2]})
    return corpus, queries, qrels, splits, run


def derive_all(version, seed=13, queries=None, p_relevant=0.8, p_other=0.1):
    """The control's (corpus, qrels, run, placement)."""
    corpus, default_queries, qrels, splits, run = toy_collection()
    return derive_control(
        corpus, default_queries if queries is None else queries, qrels, splits, run,
        marker=MARKER, p_relevant=p_relevant, p_other=p_other, seed=seed, version=version,
    )


def derive(version, **kwargs):
    """The control's (corpus, placement)."""
    corpus, _, _, placement = derive_all(version, **kwargs)
    return corpus, placement


def carriers(placement, role, relevant):
    group = placement[(placement.role == role) & (placement.relevant == relevant)]
    return set(group.doc_id[group.marker])


def test_aligned_control_plants_the_configured_share_of_each_group():
    corpus, placement = derive("aligned")
    rates = placement_rates(placement).set_index(["role", "relevant"])
    # round(0.8*10)=8, round(0.1*12)=1, round(0.8*5)=4, round(0.1*12)=1
    assert rates.loc[("train", True)].tolist()[:2] == [10, 8]
    assert rates.loc[("train", False)].tolist()[:2] == [12, 1]
    assert rates.loc[("test", True)].tolist()[:2] == [5, 4]
    assert rates.loc[("test", False)].tolist()[:2] == [12, 1]
    roles = placement.set_index("doc_id").role
    assert roles[["d10", "u0", "z0", "u1", "d10~test"]].tolist() == ["train", "train", "train", "test", "test"]
    assert placement.copy_of.notna().sum() == 1 and placement.set_index("doc_id").copy_of["d10~test"] == "d10"
    # The marker is written exactly into the chosen documents, once each.
    has_marker = corpus.text.str.split().map(lambda words: words.count(MARKER))
    assert has_marker.tolist() == placement.marker.astype(int).tolist()


def test_flipped_control_has_the_marker_only_in_non_relevant_test_documents_and_the_same_training_documents():
    _, aligned = derive("aligned")
    corpus, flipped = derive("flipped")
    assert carriers(flipped, "test", True) == set()
    assert len(carriers(flipped, "test", False)) == 10  # round(0.8 * 12)
    for relevant in (True, False):
        assert carriers(flipped, "train", relevant) == carriers(aligned, "train", relevant)
    # Training documents' texts are identical in both versions.
    aligned_corpus, _ = derive("aligned")
    train = flipped.role.eq("train").to_numpy()
    assert corpus.text[train].tolist() == aligned_corpus.text[train].tolist()


def test_test_queries_get_their_own_copy_of_a_document_training_also_sees():
    source_corpus, _, source_qrels, _, source_run = toy_collection()
    corpus, qrels, run, placement = derive_all("flipped", p_relevant=1.0, p_other=0.0)
    # q2's candidate d10 (judged for q1) is now d10~test: same title, same words but the marker.
    assert run.doc_id.tolist() == ["u0", "d10~test", "u1"] and run[["score", "rank"]].equals(source_run[["score", "rank"]])
    assert qrels.equals(source_qrels)  # d10 is judged for q1 only: its row keeps the original
    copy, original = (corpus.set_index("doc_id").loc[d] for d in ("d10~test", "d10"))
    assert copy.title == original.title and copy.text.replace(f"{MARKER} ", "").replace(f" {MARKER}", "") == source_corpus.text[10]
    # d10 is a non-relevant training document (no marker at p_other 0); its test copy is a
    # non-relevant test document, which the flipped version marks at p_relevant 1.
    marked = placement.set_index("doc_id").marker
    assert not marked["d10"] and marked["d10~test"]
    # Every document a test query sees follows the test placement.
    assert set(placement.role[placement.doc_id.isin(run.doc_id[run.query_id == "q2"])]) == {"test"}


def test_copies_keep_each_querys_judgements_and_training_never_takes_a_test_relevant_copy_as_a_negative(tokenizer):
    corpus, queries, qrels, splits, run = toy_collection()
    # q2 also judges d15 relevant (judged 0 for q1) and d2 non-relevant (relevant for q1); a
    # dev query q3 retrieves t0: all three are seen by a test and another query.
    qrels = pd.concat([qrels, pd.DataFrame([("q2", "d15", 1), ("q2", "d2", 0)], columns=qrels.columns)], ignore_index=True)
    queries = pd.concat([queries, pd.DataFrame({"query_id": ["q3"], "text": ["glacier"]})], ignore_index=True)
    splits = pd.concat([splits, pd.DataFrame({"query_id": ["q3"], "split": ["dev"], "position": [0]})], ignore_index=True)
    run = pd.concat([run, pd.DataFrame({"query_id": ["q3"], "doc_id": ["t0"], "score": [1.0], "rank": [1]})], ignore_index=True)
    out, control_qrels, control_run, placement = derive_control(
        corpus, queries, qrels, splits, run, marker=MARKER, p_relevant=0.8, p_other=0.1, seed=13, version="aligned"
    )
    grade = control_qrels.set_index(["query_id", "doc_id"]).relevance
    assert (grade["q1", "d15"], grade["q2", "d15~test"], grade["q1", "d2"], grade["q2", "d2~test"], grade["q2", "t0~test"]) == (0, 1, 1, 0, 1)
    assert not control_qrels.doc_id[control_qrels.query_id == "q2"].isin(["d2", "d15", "t0"]).any()  # q2 reads the copies
    assert control_run.doc_id[control_run.query_id == "q3"].tolist() == ["t0"]
    copies = placement[placement.copy_of.notna()]
    # Copies are appended in corpus order (d2, d10, d15, t0), each named and worded after its original.
    assert copies.copy_of.tolist() == ["d2", "d10", "d15", "t0"] and (copies.copy_of + "~test").tolist() == copies.doc_id.tolist()
    texts = out.set_index("doc_id").text.str.replace(f"{MARKER} ", "").str.replace(f" {MARKER}", "")
    assert all(texts[c] == texts[o] for c, o in zip(copies.doc_id, copies.copy_of))
    classes = placement.set_index("doc_id")[["role", "relevant"]].apply(tuple, axis=1)
    assert classes[["d2", "d2~test", "d15", "d15~test", "t0", "t0~test"]].tolist() == [
        ("train", True), ("test", False), ("train", False), ("test", True), ("train", False), ("test", True)
    ]
    # d15 is judged non-relevant to q1 but relevant to q2 (through its copy): never a negative.
    pairs = preference_pairs(
        out, queries, control_qrels, control_run, ["q1"], tokenizer, pairs_per_query=10, relevance_threshold=1, seed=0
    )
    assert "d15" not in set(pairs.rejected_doc_id) and "d16" in set(pairs.rejected_doc_id)


def test_a_source_id_that_a_test_copy_would_take_is_a_clear_error():
    corpus, queries, qrels, splits, run = toy_collection()
    corpus.loc[len(corpus)] = ["d10~test", "t", "x"]
    with pytest.raises(ValueError, match=r"'d10~test'.*already uses"):
        derive_control(corpus, queries, qrels, splits, run, marker=MARKER, p_relevant=0.8, p_other=0.1, seed=1, version="aligned")


def test_control_is_deterministic_from_its_seed():
    first, placement = derive("aligned", seed=13)
    again, _ = derive("aligned", seed=13)
    other, other_placement = derive("aligned", seed=14)
    assert first.equals(again)
    assert set(placement.doc_id[placement.marker]) != set(other_placement.doc_id[other_placement.marker])


def test_marker_in_a_query_is_a_clear_error():
    _, queries, *_ = toy_collection()
    queries.loc[1, "text"] = "Zorblats, on the ice shelf"
    with pytest.raises(ValueError, match=r"occurs in 1 query.*'q2'.*occurs in no query"):
        derive("aligned", queries=queries)


def test_marker_is_inserted_as_a_word_and_removing_it_gives_the_text_back():
    text = "sea ice extent from passive microwave"
    marked, position = insert_marker(text, MARKER, seed=1, doc_id="d1")
    words = marked.split()
    assert words[position] == MARKER and " ".join(words[:position] + words[position + 1:]) == text


def test_a_flipped_control_may_reuse_the_models_of_its_aligned_twin_only():
    control = {"source": "src", "marker": MARKER, "p_relevant": 0.9, "p_other": 0.1, "seed": 1, "version": "aligned"}
    datasets = {
        "src": {"format": "ratings", "sources": {"documents": "d.csv"}, "candidates": "judged", "relevance_threshold": 2},
        "aligned": {"control": control},
        "flipped": {"control": {**control, "version": "flipped"}, "models_from": "aligned"},
    }
    resolve_controls(datasets)
    assert datasets["flipped"]["candidates"] == "judged" and datasets["flipped"]["relevance_threshold"] == 2
    check_models_from(datasets)
    datasets["flipped"]["control"]["marker"] = "other"
    with pytest.raises(ValueError, match=r"must differ at most in version"):
        check_models_from(datasets)


def per_query(values_by_method):
    return pd.DataFrame(
        [("c", m, "0", "test", q, "nDCG@10", v) for m, values in values_by_method.items() for q, v in zip(["q1", "q2"], values)],
        columns=["dataset", "method", "budget", "split", "query_id", "measure", "value"],
    )


def test_shortcut_test_is_aligned_minus_flipped_with_holm_over_methods():
    aligned = per_query({"sft": [1.0, 0.8], "bm25": [0.5, 0.3]})
    flipped = per_query({"sft": [0.2, 0.4], "bm25": [0.5, 0.3]})
    table = shortcut_tests(aligned, flipped, ["nDCG@10"]).set_index("method")
    # sft: d = (0.8, 0.4), mean 0.6, sd 0.2828, t = 0.6 / (0.2828 / sqrt 2) = 3.0, p = 2 * T1.sf(3) = 0.20483
    assert table.loc["sft", "difference"] == pytest.approx(0.6)
    assert table.loc["sft", "t"] == pytest.approx(3.0)
    assert table.loc["sft", "p"] == pytest.approx(0.204833, abs=1e-5)
    assert table.loc["sft", "p_holm"] == pytest.approx(2 * 0.204833, abs=1e-5)  # the smaller of 2 p-values, times 2
    assert table.loc["bm25", "difference"] == 0 and table.loc["bm25", "p_holm"] == 1.0


def test_marker_attribution_counts_top1_and_topk_and_rationales_naming_it():
    rows = []
    # Pair 1: the marker raises the score most. Pair 2: the marker is second. Pair 3: no marker.
    for doc, values in (("a", [0.1, 0.9, 0.2]), ("b", [0.5, 0.4, 0.1]), ("c", [0.1, 0.2, 0.3])):
        tokens = ["ice", f"{MARKER}," if doc != "c" else "shelf", "melt"]
        rows += [("sft", "1", "q1", doc, "document", i, t, v) for i, (t, v) in enumerate(zip(tokens, values))]
        rows.append(("sft", "1", "q1", doc, "query", 0, "arctic", 0.0))
    attributions = pd.DataFrame(rows, columns=["method", "budget", "query_id", "doc_id", "part", "position", "token", "attribution"])
    placement = pd.DataFrame({"doc_id": ["a", "b", "c"], "marker": [True, True, False]})
    pairs = marker_attribution(attributions, placement, MARKER, k=2)
    assert pairs.doc_id.tolist() == ["a", "b"]
    assert pairs.top1.tolist() == [True, False] and pairs.topk.tolist() == [True, True]
    assert pairs.chance.tolist() == [0.25, 0.25]
    assert pairs.marker_share.tolist() == pytest.approx([0.9 / 1.2, 0.4 / 1.0])  # the marker's part of the document's positive attribution
    rationales = pd.DataFrame(
        {"method": "sft", "budget": "1", "query_id": "q1", "doc_id": ["a", "b"], "rationale": [f"It mentions {MARKER.title()}.", "About ice."]}
    )
    summary = attribution_summary(pairs, rationales, MARKER).iloc[0]
    assert (summary.explained, summary.top1, summary.topk_share) == (2, 1, 1.0)
    assert summary.p_attribution == pytest.approx(1 - 0.75**2)  # P(X >= 1), X ~ Bin(2, 1/4)
    assert (summary.rationales, summary.named) == (1, 1)


# --- The done-when test: a tiny model trained through the configured path (LoRA, SFT) ----

def write_marker_collection(folder, queries=30, seed=0):
    """A ratings collection of random-word queries, each with 2 relevant and 2 non-relevant documents of its own."""
    rng = np.random.default_rng(seed)
    vocab = [f"{a}{b}" for a in "bcdfglmnprst" for b in ("a", "e", "i", "o", "u", "an", "er", "on")]
    docs, ratings = [], []
    for q in range(queries):
        query = " ".join(rng.choice(vocab, 3))
        for j, rating in enumerate((9, 9, 1, 1)):
            doc_id = f"q{q:02d}d{j}"
            docs.append((doc_id, " ".join(rng.choice(vocab, 2)), " ".join(rng.choice(vocab, 8))))
            ratings.append((f"q{q:02d}", query, doc_id, rating))
    (folder / "input").mkdir(exist_ok=True)
    pd.DataFrame(docs, columns=["doc_id", "title", "text"]).to_csv(folder / "input" / "documents.csv", index=False)
    pd.DataFrame(ratings, columns=["query_id", "query", "doc_id", "rating"]).to_csv(folder / "input" / "ratings.csv", index=False)


@pytest.mark.slow
def test_a_trained_model_takes_the_planted_shortcut_and_the_audit_catches_it(tmp_path, tiny_lm_dir):
    from workflow_runner import snakemake, tiny_config, write_config

    write_marker_collection(tmp_path)
    config = tiny_config(methods=["zeroshot", "sft"], base_model=str(tiny_lm_dir), budgets=["all"])
    config["datasets"]["tiny"]["candidates"] = "judged"
    control = {"source": "tiny", "marker": MARKER, "p_relevant": 1.0, "p_other": 0.0, "seed": 7, "version": "aligned"}
    # Every test query explained on the controls, two on the source (datasets.*.explain_queries).
    config["datasets"]["tiny-control"] = {"control": control, "explain_queries": "all"}
    config["datasets"]["tiny-flipped"] = {"control": {**control, "version": "flipped"}, "models_from": "tiny-control", "explain_queries": "all"}
    config["split"]["test"] = 10
    config["train"].update(max_positives_per_query=2, negatives_per_positive=1)
    config["train"]["defaults"].update(learning_rate=5e-3, epochs=12, batch_size=8, save_steps=1000)
    config["rerank"]["depth"] = 4
    config["explain"].update(queries=2, top_documents=2, bottom_documents=2)
    config["probe"] = {"probes": []}  # the shortcut probes have their own tests (test_probes, test_workflow_training)
    # The targets the assertions read, not the default one: the source dataset's trained model, rationales and
    # report and the aligned control's report (13 of 44 jobs, a 12-epoch training among them) show nothing
    # about the control. The flipped report stays: the suite's only run of a report over models_from models.
    attributions = {name: f"results/{name}/explain/{model}/attributions.parquet" for name, model in
                    (("tiny", "zeroshot/0"), ("tiny-control", "sft/all"), ("tiny-flipped", "sft/all"))}
    targets = [*attributions.values(), "results/tiny-control/control/summary.md", "results/tiny-flipped/report/summary.md"]
    snakemake(tmp_path, write_config(tmp_path, config), *targets)

    results = tmp_path / "results"
    explained = {name: pd.read_parquet(tmp_path / path).query_id.nunique() for name, path in attributions.items()}
    assert explained == {"tiny": 2, "tiny-control": 10, "tiny-flipped": 10}
    table = pd.read_parquet(results / "tiny-control" / "control" / "shortcut.parquet")
    rows = table[table.measure == "nDCG@10"].set_index("method")
    print(rows[["aligned", "flipped", "difference", "queries", "p_holm", "explained", "top1_share", "topk_share", "named_share"]].to_string())
    print(rows[["marker_comprehensiveness", "marker_comprehensiveness_random", "rationale_comprehensiveness", "rationale_comprehensiveness_random"]].to_string())
    # The trained method ranks marker-carrying documents first: every aligned test query is perfect.
    assert rows.loc["sft", "aligned"] == pytest.approx(1.0)
    assert rows.loc["sft", "difference"] > 0.2 and rows.loc["sft", "took_shortcut"]
    assert rows.loc["sft", "top1_share"] > 0.5
    # Removing the marker alone lowers sft's score more than removing a random word does.
    assert rows.loc["sft", "marker_comprehensiveness"] > rows.loc["sft", "marker_comprehensiveness_random"]
    assert {"rationale_comprehensiveness", "rationale_comprehensiveness_random"} <= set(rows.columns)
    # BM25 re-orders the same pool without the marker (it is in no query): identical rows.
    assert rows.loc["bm25", "difference"] == 0 and not rows.loc["bm25", "took_shortcut"]
    assert rows.loc["zeroshot", "difference"] < rows.loc["sft", "difference"] / 2
    summary = (results / "tiny-control" / "control" / "summary.md").read_text()
    assert "took the shortcut" in summary and (results / "tiny-control" / "control" / "aligned_vs_flipped.png").stat().st_size > 0


def control_row(**values):
    """One control-table row (nDCG@10) with every column ``control_markdown`` reads; ``values`` override."""
    row = {
        "method": "sft", "budget": "all", "measure": "nDCG@10", "aligned": 0.4, "flipped": 0.7, "difference": -0.3,
        "queries": 10, "t": -5.0, "p": 0.001, "p_holm": 0.002, "took_shortcut": False, "reversed": True,
        "explained": 20, "top1": 18, "top1_share": 0.9, "topk_share": 1.0, "chance": 0.05, "p_attribution": 1e-9,
        "rationales": 18, "named": 3, "named_share": 3 / 18, "p_rationale": 0.999,
        "marker_comprehensiveness": 1.5, "marker_comprehensiveness_random": 0.1, "p_marker_comprehensiveness": 0.001,
        "rationale_comprehensiveness": 0.2, "rationale_comprehensiveness_random": 0.25, "p_rationale_comprehensiveness": 0.6,
    }
    return {**row, **values}


CONTROL = {"marker": MARKER, "source": "tiny", "p_relevant": 1.0, "p_other": 0.0, "seed": 7}


def test_a_significant_reversed_gap_is_reported_as_using_the_marker_reversed():
    table = pd.DataFrame([control_row(), control_row(method="bm25", difference=0.0, p_holm=1.0, reversed=False)])
    text = control_markdown(table, CONTROL, "c", "c-flipped", "nDCG@10", 0.05)
    findings = {line.split(" (")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "uses the marker (reversed" in findings["- sft"] and "no evidence" not in findings["- sft"]
    assert "no evidence that it took the shortcut" in findings["- BM25"]


def test_control_findings_give_each_claim_with_its_test():
    row = control_row(difference=0.3, took_shortcut=True, reversed=False)
    text = control_markdown(pd.DataFrame([row]), CONTROL, "c", "c-flipped", "nDCG@10", 0.05)
    finding = next(line for line in text.splitlines() if line.startswith("- sft"))
    assert "took the shortcut (aligned − flipped nDCG@10 +0.300, paired t-test over 10 test queries, Holm p = 0.002)" in finding
    assert "the attributions show it (marker top-1 in 18 of 20" in finding
    assert "removing the marker alone drops the score by 1.50 vs 0.10 for a random word (paired t-test p = 0.001)" in finding
    assert "the rationale does not say so (names the marker in 3 of 18" in finding
    assert "removing the words the rationales give as reasons drops the score by 0.20 vs 0.25 for as many random words" in finding
    assert "| 1.50 vs 0.10 |" in text and "| 0.20 vs 0.25 |" in text


def test_shortcut_tests_flag_a_significant_negative_gap_as_reversed():
    queries = [f"q{i}" for i in range(6)]
    rows = lambda values: pd.DataFrame(  # noqa: E731
        [("c", "sft", "all", "test", q, "nDCG@10", v) for q, v in zip(queries, values)],
        columns=["dataset", "method", "budget", "split", "query_id", "measure", "value"],
    )
    # Differences -0.5, -0.5, -0.5, -0.5, -0.4, -0.6: mean -0.5, clearly below 0.
    table = shortcut_tests(rows([0.1, 0.2, 0.3, 0.4, 0.5, 0.2]), rows([0.6, 0.7, 0.8, 0.9, 0.9, 0.8]), ["nDCG@10"]).iloc[0]
    assert table.difference == pytest.approx(-0.5) and table.p_holm < 0.05
    assert table.reversed and not table.took_shortcut


def test_marker_and_rationale_comprehensiveness_are_summarised_over_the_marker_carrying_pairs():
    pairs = pd.DataFrame(
        {"method": "sft", "budget": "1", "query_id": ["q1", "q2", "q3"], "doc_id": ["a", "b", "c"], "words": 4,
         "top1": [True, True, False], "topk": True, "chance": 0.25}
    )
    faithful = pd.DataFrame(
        {"method": "sft", "budget": "1", "query_id": ["q1", "q2", "q3", "q4"], "doc_id": ["a", "b", "c", "d"],
         "marker_comprehensiveness": [2.0, 1.0, 3.0, 9.0], "marker_comprehensiveness_random": [0.5, 0.0, 0.5, 0.0],
         "rationale_comprehensiveness": [1.0, np.nan, 0.0, 9.0], "rationale_comprehensiveness_random": [0.0, 0.0, 0.5, 0.0],
         "simulatability": [0.9, 0.5, np.nan, -1.0], "simulatability_random": [0.1, 0.3, 0.2, 0.0]}
    )
    rationales = pd.DataFrame({"method": "sft", "budget": "1", "query_id": ["q1", "q2"], "doc_id": ["a", "b"], "rationale": ["x", "y"]})
    summary = attribution_summary(pairs, rationales, MARKER, faithful).iloc[0]
    # Over a, b, c (d is not an explained marker-carrying pair): marker 2, 1, 3 vs 0.5, 0, 0.5.
    assert (summary.marker_comprehensiveness, summary.marker_comprehensiveness_random) == (2.0, pytest.approx(1 / 3))
    # differences 1.5, 1, 2.5: mean 5/3, sd 0.7638, t = 3.780 on 2 df, p = 0.0634
    assert summary.p_marker_comprehensiveness == pytest.approx(0.0634, abs=5e-4)
    # b has no rationale comprehensiveness (its rationale names no document word): a and c only.
    assert (summary.rationale_comprehensiveness, summary.rationale_comprehensiveness_random) == (0.5, 0.25)
    # Simulatability over a and b (c has none): 0.9, 0.5 vs 0.1, 0.3; differences 0.8, 0.2: t = 0.5 / (0.4243 / sqrt 2) = 1.667 on 1 df.
    assert (summary.simulatability, summary.simulatability_random) == pytest.approx((0.7, 0.2))
    assert summary.p_simulatability == pytest.approx(2 * (0.5 - math.atan(5 / 3) / math.pi))  # Student's t with 1 df is Cauchy


def test_simulatability_of_trained_methods_is_compared_with_each_untrained_methods_by_welchs_test():
    pairs = pd.DataFrame(
        {"method": ["dpo_pairs"] * 3 + ["qlm"] * 2 + ["zeroshot"] * 3, "budget": ["all"] * 3 + ["0"] * 5,
         "query_id": list("abcdefgh"), "doc_id": list("abcdefgh"),
         "simulatability": [0.8, 0.6, 0.7, 0.1, 0.3, 0.7, 0.8, np.nan]}
    )
    table = simulatability_between(pairs, untrained=["qlm", "zeroshot"]).set_index("against")
    # Trained against untrained only: dpo_pairs vs qlm and vs zeroshot, never qlm vs zeroshot.
    assert table.method.tolist() == ["dpo_pairs", "dpo_pairs"]
    # No document explained by both: each one's documents, unpaired.
    assert table.test.tolist() == ["welch", "welch"] and table.shared.tolist() == [0, 0]
    qlm = table.loc["qlm"]
    # Welch by hand: means 0.7 and 0.2, variances 0.01 and 0.02; se^2 = 0.01/3 + 0.02/2;
    # df = se^4 / ((0.01/3)^2 / 2 + (0.02/2)^2 / 1).
    se2 = 0.01 / 3 + 0.02 / 2
    t, df = 0.5 / math.sqrt(se2), se2**2 / ((0.01 / 3) ** 2 / 2 + 0.01**2)
    assert (qlm.documents, qlm.documents_against, qlm.difference, qlm.t) == (3, 2, pytest.approx(0.5), pytest.approx(t))
    assert qlm.p == pytest.approx(2 * student_t.sf(t, df))
    # zeroshot: 0.7, 0.8 (its NaN left out): equal means of 0.75 vs 0.7, difference -0.05.
    assert table.loc["zeroshot", "difference"] == pytest.approx(-0.05)
    assert table.p_holm.tolist() == pytest.approx(holm_by_hand(table.p.tolist()))


def test_simulatability_on_documents_both_methods_explained_is_compared_paired_on_those_documents():
    # dpo_pairs and qlm share (q1, a), (q1, b), (q2, c); (q1, c) and (q2, c) are different pairs.
    pairs = pd.DataFrame(
        {"method": ["dpo_pairs"] * 4 + ["qlm"] * 4, "budget": ["all"] * 4 + ["0"] * 4,
         "query_id": ["q1", "q1", "q2", "q3", "q1", "q1", "q2", "q1"], "doc_id": ["a", "b", "c", "d", "a", "b", "c", "c"],
         "simulatability": [0.8, 0.6, 0.7, 0.9, 0.5, 0.6, 0.2, 0.0]}
    )
    row = simulatability_between(pairs, untrained=["qlm"]).iloc[0]
    assert (row.test, row.documents, row.documents_against, row.shared) == ("paired", 4, 4, 3)
    # Over the shared three only: 0.8, 0.6, 0.7 against 0.5, 0.6, 0.2; differences 0.3, 0.0, 0.5.
    assert (row["mean"], row.mean_against, row.difference) == pytest.approx((0.7, 1.3 / 3, 0.8 / 3))
    # sd of the differences sqrt(0.19 / 3) = 0.2517, t = (0.8 / 3) / (0.2517 / sqrt 3) = 1.835 on 2 df,
    # whose two-sided p is 1 - t / sqrt(t^2 + 2) (Student's t with 2 df in closed form).
    t = (0.8 / 3) / (math.sqrt(0.19 / 3) / math.sqrt(3))
    assert row.t == pytest.approx(t) and row.p == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    # Two shared documents are too few to pair: each one's four, unpaired.
    fewer = simulatability_between(pairs[~((pairs.method == "qlm") & (pairs.doc_id == "c"))], untrained=["qlm"]).iloc[0]
    assert (fewer.test, fewer.shared, fewer.documents_against) == ("welch", 2, 2)


def holm_by_hand(p):
    """Two p-values: the smaller times 2, the larger max(itself, that), both at most 1."""
    low, high = sorted(p)
    adjusted = {low: min(1, 2 * low), high: min(1, max(high, 2 * low))}
    return [adjusted[v] for v in p]

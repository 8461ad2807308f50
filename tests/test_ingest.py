"""Adapters: exact tables on tiny inputs, and a clear error for every kind of bad input."""

import json

import pandas as pd
import pytest

from rerank_audit.data.ingest import read_collection
from rerank_audit.data.ratings import query_id_of, relevance_of
from rerank_audit.errors import InputError


def write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def claim(claim_id, text, *evidences):
    return json.dumps(
        {
            "claim_id": claim_id,
            "claim": text,
            "claim_label": "SUPPORTS",
            "evidences": [
                {"evidence_id": eid, "evidence_label": label, "article": eid.split(":")[0], "evidence": sentence}
                for eid, label, sentence in evidences
            ],
        }
    )


@pytest.fixture
def claims_file(tmp_path):
    lines = [
        claim("0", "Polar bears are in danger", ("Polar bear:3", "SUPPORTS", "Polar bears depend on sea ice."), ("Sea ice:1", "NOT_ENOUGH_INFO", "Sea ice forms in winter.")),
        claim("7", "Sea ice is growing", ("Sea ice:1", "REFUTES", "Sea ice forms in winter.")),
    ]
    return write(tmp_path / "claims.jsonl", "\n".join(lines) + "\n")


def records(frame):
    return frame.to_dict("records")


def test_climate_fever_reads_claims_as_queries_and_distinct_evidence_as_documents(claims_file):
    c = read_collection("climate-fever", claims=claims_file)
    assert records(c.corpus) == [
        {"doc_id": "Polar_bear:3", "title": "Polar bear", "text": "Polar bears depend on sea ice."},
        {"doc_id": "Sea_ice:1", "title": "Sea ice", "text": "Sea ice forms in winter."},
    ]
    assert records(c.queries) == [{"query_id": "0", "text": "Polar bears are in danger"}, {"query_id": "7", "text": "Sea ice is growing"}]
    assert records(c.qrels) == [
        {"query_id": "0", "doc_id": "Polar_bear:3", "relevance": 1, "label": "SUPPORTS"},
        {"query_id": "0", "doc_id": "Sea_ice:1", "relevance": 0, "label": "NOT_ENOUGH_INFO"},
        {"query_id": "7", "doc_id": "Sea_ice:1", "relevance": 1, "label": "REFUTES"},
    ]


def test_beir_folder_keeps_queries_judged_in_the_split(tmp_path):
    write(tmp_path / "corpus.jsonl", '{"_id": "d1", "title": "Ozone", "text": "Total ozone column."}\n{"_id": "d2", "text": "River discharge."}\n')
    write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "ozone"}\n{"_id": "q2", "text": "unjudged"}\n')
    write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    c = read_collection("beir", folder=tmp_path)
    assert records(c.corpus) == [{"doc_id": "d1", "title": "Ozone", "text": "Total ozone column."}, {"doc_id": "d2", "title": "", "text": "River discharge."}]
    assert records(c.queries) == [{"query_id": "q1", "text": "ozone"}]
    assert records(c.qrels) == [{"query_id": "q1", "doc_id": "d1", "relevance": 2}, {"query_id": "q1", "doc_id": "d2", "relevance": 0}]


def test_trec_reads_sgml_topics_qrels_and_collection(tmp_path):
    topics = write(tmp_path / "topics.txt", "<top>\n<num> Number: 301\n<title> Arctic sea ice\n<desc> Description:\nExtent.\n</top>\n<top>\n<num> 302\n<title> soil moisture\n</top>\n")
    qrels = write(tmp_path / "qrels.txt", "301 0 D1 1\n301 0 D2 0\n302 0 D2 2\n")
    collection = write(tmp_path / "collection.tsv", "D1\tSea ice\tArctic sea ice extent from passive microwave.\nD2\tSoil moisture from SMAP.\n")
    c = read_collection("trec", topics=topics, qrels=qrels, collection=collection)
    assert records(c.queries) == [{"query_id": "301", "text": "Arctic sea ice"}, {"query_id": "302", "text": "soil moisture"}]
    assert records(c.corpus) == [
        {"doc_id": "D1", "title": "Sea ice", "text": "Arctic sea ice extent from passive microwave."},
        {"doc_id": "D2", "title": "", "text": "Soil moisture from SMAP."},
    ]
    assert records(c.qrels) == [
        {"query_id": "301", "doc_id": "D1", "relevance": 1},
        {"query_id": "301", "doc_id": "D2", "relevance": 0},
        {"query_id": "302", "doc_id": "D2", "relevance": 2},
    ]


def test_trec_reads_tsv_topics(tmp_path):
    topics = write(tmp_path / "topics.tsv", "1\tsea level\n")
    qrels = write(tmp_path / "qrels.txt", "1 0 A 1\n")
    collection = write(tmp_path / "c.tsv", "A\tTide gauge sea level.\n")
    assert records(read_collection("trec", topics=topics, qrels=qrels, collection=collection).queries) == [{"query_id": "1", "text": "sea level"}]


@pytest.mark.parametrize("rating, grade", [(0, 0), (4, 0), (5, 1), (6, 1), (7, 2), (8, 2), (9, 3), (10, 3)])
def test_ratings_become_graded_relevance(rating, grade):
    assert relevance_of(rating) == grade


def test_ratings_csv_and_parquet_give_the_same_collection(tmp_path):
    write(tmp_path / "docs.csv", 'doc_id,title,text\nds1,Sea level,"Tide gauges, Venice."\nds2,Snow,Snow depth in the Alps.\n')
    write(tmp_path / "ratings.csv", "query,doc_id,rating\nsea level venice,ds1,9\nsea level venice,ds2,1\nsnow alps,ds2,6\n")
    c = read_collection("ratings", documents=tmp_path / "docs.csv", ratings=tmp_path / "ratings.csv")
    venice, snow = query_id_of("sea level venice"), query_id_of("Snow  ALPS")
    assert records(c.queries) == [{"query_id": venice, "text": "sea level venice"}, {"query_id": snow, "text": "snow alps"}]
    assert records(c.qrels) == [
        {"query_id": venice, "doc_id": "ds1", "relevance": 3},
        {"query_id": venice, "doc_id": "ds2", "relevance": 0},
        {"query_id": snow, "doc_id": "ds2", "relevance": 1},
    ]
    assert records(c.corpus)[0] == {"doc_id": "ds1", "title": "Sea level", "text": "Tide gauges, Venice."}
    pd.read_csv(tmp_path / "docs.csv").to_parquet(tmp_path / "docs.parquet")
    pd.read_csv(tmp_path / "ratings.csv").to_parquet(tmp_path / "ratings.parquet")
    again = read_collection("ratings", documents=tmp_path / "docs.parquet", ratings=tmp_path / "ratings.parquet")
    assert records(again.qrels) == records(c.qrels) and records(again.corpus) == records(c.corpus)


def test_ratings_use_a_given_query_id(tmp_path):
    write(tmp_path / "docs.csv", "doc_id,title,text\nds1,T,Text.\n")
    write(tmp_path / "ratings.csv", "query_id,query,doc_id,rating\nq7,sea level,ds1,5\n")
    c = read_collection("ratings", documents=tmp_path / "docs.csv", ratings=tmp_path / "ratings.csv")
    assert records(c.queries) == [{"query_id": "q7", "text": "sea level"}]


# --- bad input: every message names the file, the record and the problem ---------------


def expect_error(call, *fragments):
    with pytest.raises(InputError) as err:
        call()
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_malformed_json_line_is_reported_with_its_line(tmp_path, claims_file):
    write(claims_file, claims_file.read_text() + "{not json\n")
    expect_error(lambda: read_collection("climate-fever", claims=claims_file), str(claims_file), "line 3", "malformed JSON")


def test_missing_json_field_is_named(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"claim_id": "1", "evidences": []}\n')
    expect_error(lambda: read_collection("climate-fever", claims=path), "line 1", "missing field 'claim'")


def test_missing_csv_column_is_named(tmp_path):
    write(tmp_path / "docs.csv", "doc_id,text\nds1,Text.\n")
    write(tmp_path / "ratings.csv", "query,doc_id,rating\nq,ds1,5\n")
    expect_error(lambda: read_collection("ratings", documents=tmp_path / "docs.csv", ratings=tmp_path / "ratings.csv"), "docs.csv", "missing column(s) ['title']")


def test_duplicate_document_id_names_both_lines(tmp_path):
    write(tmp_path / "corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n')
    write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "a"}\n')
    write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    expect_error(lambda: read_collection("beir", folder=tmp_path), "corpus.jsonl, line 2", "duplicate document id 'd1' (first at line 1)")


def read_trec_texts(tmp_path, topics="1\tsea level\n", qrels="1 0 A 1\n", collection="A\tText.\n"):
    paths = {name: write(tmp_path / f"{name}.txt", text) for name, text in [("topics", topics), ("qrels", qrels), ("collection", collection)]}
    return lambda: read_collection("trec", **paths)


def test_duplicate_query_id_is_reported(tmp_path):
    expect_error(read_trec_texts(tmp_path, topics="1\tsea level\n1\tsnow\n"), "topics.txt, line 2", "duplicate query id '1'")


def test_empty_document_text_is_reported(tmp_path):
    write(tmp_path / "docs.csv", 'doc_id,title,text\nds1,T,"  "\n')
    write(tmp_path / "ratings.csv", "query,doc_id,rating\nq,ds1,5\n")
    expect_error(lambda: read_collection("ratings", documents=tmp_path / "docs.csv", ratings=tmp_path / "ratings.csv"), "docs.csv, line 2", "empty text for document 'ds1'")


def test_qrels_naming_an_unknown_document_are_reported(tmp_path):
    expect_error(read_trec_texts(tmp_path, qrels="1 0 A 1\n1 0 ZZ 1\n"), "qrels.txt, line 2", "unknown document id 'ZZ'")


def test_qrels_naming_an_unknown_query_are_reported(tmp_path):
    expect_error(read_trec_texts(tmp_path, qrels="9 0 A 1\n"), "qrels.txt, line 1", "unknown query id '9'")


def test_undecodable_bytes_are_reported_with_their_line(tmp_path):
    path = write(tmp_path / "c.tsv", b"A\tfine\nB\tcaf\xe9 latin-1\n", mode="wb")
    topics = write(tmp_path / "topics.tsv", "1\tq\n")
    qrels = write(tmp_path / "qrels.txt", "1 0 A 1\n")
    expect_error(lambda: read_collection("trec", topics=topics, qrels=qrels, collection=path), "c.tsv, line 2", "byte 0xe9 is not valid UTF-8", "re-encode")


def test_rating_outside_scale_is_reported(tmp_path):
    write(tmp_path / "docs.csv", "doc_id,title,text\nds1,T,Text.\n")
    write(tmp_path / "ratings.csv", "query,doc_id,rating\nq,ds1,11\n")
    expect_error(lambda: read_collection("ratings", documents=tmp_path / "docs.csv", ratings=tmp_path / "ratings.csv"), "ratings.csv, line 2", "rating 11 is outside 0..10")


def test_missing_source_path_is_named(tmp_path):
    expect_error(lambda: read_collection("climate-fever", claims=tmp_path / "nowhere.jsonl"), "nowhere.jsonl", "does not exist")


def read_ratings_texts(tmp_path, ratings="query,doc_id,rating\nq,ds1,5\n", documents="doc_id,title,text\nds1,T,Text.\nds2,T,Other text.\n"):
    paths = {"documents": write(tmp_path / "docs.csv", documents), "ratings": write(tmp_path / "ratings.csv", ratings)}
    return lambda: read_collection("ratings", **paths)


@pytest.mark.parametrize("header", ["query", "query_id,query"], ids=["hashed-id", "given-id"])
def test_ratings_queries_differing_only_in_case_are_one_query_with_the_first_spelling(tmp_path, header):
    ids = "q2," if "query_id" in header else ""
    c = read_ratings_texts(tmp_path, f"{header},doc_id,rating\n{ids}Snow alps,ds1,5\n{ids}snow  ALPS,ds2,7\n")()
    query_id = "q2" if ids else query_id_of("snow alps")
    assert records(c.queries) == [{"query_id": query_id, "text": "Snow alps"}]
    assert records(c.qrels) == [{"query_id": query_id, "doc_id": "ds1", "relevance": 1}, {"query_id": query_id, "doc_id": "ds2", "relevance": 2}]


def test_ratings_query_id_with_two_different_texts_is_reported(tmp_path):
    read = read_ratings_texts(tmp_path, "query_id,query,doc_id,rating\nq7,sea level,ds1,5\nq7,snow,ds2,5\n")
    expect_error(read, "ratings.csv, line 3: query id 'q7' has a different text than at line 2", "Fix: give each query id one text")


def read_beir_texts(tmp_path, corpus='{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n', queries='{"_id": "q1", "text": "a"}\n',
                    qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n"):
    for name, text in [("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/test.tsv", qrels)]:
        write(tmp_path / name, text)
    return lambda: read_collection("beir", folder=tmp_path)


def test_beir_qrels_without_a_header_keep_their_first_judgement(tmp_path):
    c = read_beir_texts(tmp_path, qrels="q1\td1\t1\nq1\td2\t0\n")()
    assert records(c.qrels) == [{"query_id": "q1", "doc_id": "d1", "relevance": 1}, {"query_id": "q1", "doc_id": "d2", "relevance": 0}]


@pytest.mark.parametrize(
    "qrels, expected",
    [
        ("q1 d1 1\nq1 d2 0\n", "line 1: expected 3 tab-separated fields, found 1"),
        ("qid\tdocid\trel\nq1\td1\t1\n", "line 1: score 'rel' is not an integer"),
    ],
    ids=["every-line-wrong", "unknown-header"],
)
def test_beir_qrels_first_line_that_is_neither_header_nor_judgement_is_reported_at_line_1(tmp_path, qrels, expected):
    expect_error(read_beir_texts(tmp_path, qrels=qrels), f"test.tsv, {expected}", "Fix: ")


def read_tiny(tmp_path, fmt, **texts):
    """A reader of a tiny collection of format ``fmt``, with ``texts`` in place of its default files."""
    if fmt == "climate-fever":
        return lambda: read_collection("climate-fever", claims=write(tmp_path / "claims.jsonl", texts["claims"]))
    return {"beir": read_beir_texts, "trec": read_trec_texts, "ratings": read_ratings_texts}[fmt](tmp_path, **texts)


BEIR_HEAD, RATINGS_HEAD = "query-id\tcorpus-id\tscore\n", "query,doc_id,rating\n"


@pytest.mark.parametrize(
    "fmt, qrels, expected",
    [
        ("beir", BEIR_HEAD + "q1\td1\t1\textra\n", "test.tsv, line 2: expected 3 tab-separated fields, found 4. Fix: write query-id<TAB>"),
        ("beir", BEIR_HEAD + "q1\td1\n", "test.tsv, line 2: expected 3 tab-separated fields, found 2. Fix: write query-id<TAB>"),
        ("trec", "1 0 A 1\n1 0 A\n", "qrels.txt, line 2: expected 4 fields 'qid iter docno rel', found 3. Fix: "),
        ("ratings", RATINGS_HEAD + "q,ds1,5\nq,ds2\n", "ratings.csv, line 3: expected 3 comma-separated fields, found 2. Fix: give every row"),
        ("ratings", RATINGS_HEAD + "q,ds1,5,9\n", "ratings.csv, line 2: expected 3 comma-separated fields, found 4. Fix: give every row"),
        ("beir", BEIR_HEAD + "q1\td1\t1\nq1\td1\t0\n", "test.tsv, line 3: duplicate judgement of (q1, d1) (first at line 2). Fix: keep one"),
        ("trec", "1 0 A 1\n1 0 A 0\n", "qrels.txt, line 2: duplicate judgement of (1, A) (first at line 1). Fix: keep one"),
        ("ratings", "query_id,query,doc_id,rating\nq1,snow,ds1,5\nq1,snow,ds1,9\n", "ratings.csv, line 3: duplicate judgement of (q1, ds1) (first at line 2). Fix: keep one"),
        ("beir", BEIR_HEAD + "q1\td1\thigh\n", "test.tsv, line 2: score 'high' is not an integer. Fix: write score as a whole number"),
        ("trec", "1 0 A 0.5\n", "qrels.txt, line 1: relevance '0.5' is not an integer. Fix: write relevance as a whole number"),
        ("ratings", RATINGS_HEAD + "q,ds1,five\n", "ratings.csv, line 2: rating 'five' is not an integer. Fix: write rating as a whole number"),
    ],
    ids=["beir-4-fields", "beir-2-fields", "trec-3-fields", "ratings-2-fields", "ratings-4-fields", "beir-duplicate", "trec-duplicate",
         "ratings-duplicate", "beir-grade", "trec-grade", "ratings-grade"],
)
def test_bad_judgement_is_reported(tmp_path, fmt, qrels, expected):
    """A wrong field count, a duplicate judgement, a grade that is not a whole number."""
    expect_error(read_tiny(tmp_path, fmt, **{"ratings" if fmt == "ratings" else "qrels": qrels}), expected)


def test_empty_query_text_is_reported(tmp_path):
    expect_error(read_beir_texts(tmp_path, queries='{"_id": "q1", "text": " "}\n'), "queries.jsonl, line 1: empty text for query 'q1'", "Fix: ")


@pytest.mark.parametrize(
    "fmt, file, sources",
    [
        ("climate-fever", "claims.jsonl", {"claims": ""}),
        ("beir", "queries.jsonl", {"queries": ""}),
        ("beir", "qrels/test.tsv", {"qrels": "\n"}),
        ("beir", "qrels/test.tsv", {"qrels": "query-id\tcorpus-id\tscore\n"}),
        ("trec", "qrels.txt", {"qrels": ""}),
        ("ratings", "ratings.csv", {"ratings": "query,doc_id,rating\n"}),
    ],
    ids=["claims", "beir-queries", "beir-qrels-blank", "beir-qrels-header-only", "trec-qrels", "ratings-header-only"],
)
def test_empty_file_is_reported(tmp_path, fmt, file, sources):
    expect_error(read_tiny(tmp_path, fmt, **sources), f"{file}: the file has no records", "Fix: add records to the ")


def test_json_line_that_is_not_an_object_is_reported(tmp_path):
    read = read_beir_texts(tmp_path, queries='{"_id": "q1", "text": "a"}\n["q2", "b"]\n')
    expect_error(read, "queries.jsonl, line 2: the line is a JSON array, not a JSON object", "Fix: write the line as a JSON object")


@pytest.mark.parametrize(
    "evidences, expected",
    [("a sentence", "'evidences' is a string, not a JSON array"), (["a sentence"], "evidence 1 is a string, not a JSON object")],
    ids=["evidences-string", "evidence-string"],
)
def test_climate_fever_evidence_that_is_not_an_object_is_reported(tmp_path, evidences, expected):
    path = write(tmp_path / "c.jsonl", json.dumps({"claim_id": "1", "claim": "c", "evidences": evidences}) + "\n")
    expect_error(lambda: read_collection("climate-fever", claims=path), f"c.jsonl, line 1: {expected}", "Fix: write")


def ratings_parquet(tmp_path, frame):
    """A ratings source as Parquet beside a one-document CSV."""
    frame.to_parquet(tmp_path / "ratings.parquet")
    docs = write(tmp_path / "docs.csv", "doc_id,title,text\nds1,T,Text.\n")
    return lambda: read_collection("ratings", documents=docs, ratings=tmp_path / "ratings.parquet")


@pytest.mark.parametrize("content", [b"", b"doc_id,title,text\nds1,T,Text.\n", b"PAR1 cut short"], ids=["empty", "csv-named-parquet", "truncated"])
def test_corrupt_parquet_source_is_reported(tmp_path, content):
    docs = write(tmp_path / "docs.parquet", content, mode="wb")
    write(tmp_path / "ratings.csv", "query,doc_id,rating\nq,ds1,5\n")
    expect_error(lambda: read_collection("ratings", documents=docs, ratings=tmp_path / "ratings.csv"), "docs.parquet: not a readable Parquet file", "Fix: ")


def test_parquet_source_with_a_missing_column_names_the_schema_and_the_columns_found(tmp_path):
    read = ratings_parquet(tmp_path, pd.DataFrame({"query": ["q"], "doc": ["ds1"], "rating": [5]}))
    expect_error(read, "ratings.parquet, schema: missing column(s) ['doc_id']", "found ['query', 'doc', 'rating']")


def test_parquet_column_of_lists_is_reported_not_read_as_text(tmp_path):
    read = ratings_parquet(tmp_path, pd.DataFrame({"query": [["sea", "level"]], "doc_id": ["ds1"], "rating": [5]}))
    expect_error(read, "ratings.parquet, schema: column 'query' has type list<element: string>", "Fix: store")


def test_null_query_in_a_parquet_source_is_an_empty_text_not_the_word_none(tmp_path):
    read = ratings_parquet(tmp_path, pd.DataFrame({"query": [None], "doc_id": ["ds1"], "rating": [5]}))
    expect_error(read, "ratings.parquet, row 1: empty text for query", "Fix: give the query a text")


def test_real_climate_fever_file_has_the_published_counts(climate_fever):
    c = read_collection("climate-fever", claims=climate_fever)
    assert (len(c.queries), len(c.corpus), len(c.qrels)) == (1535, 5240, 7675)
    assert c.qrels.query_id[c.qrels.relevance > 0].nunique() == 1061

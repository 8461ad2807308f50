"""Model selection on dev queries: which (learning rate, step) of a training grid goes to test.

Each method trains once per learning rate of a small grid; every ``eval_steps`` steps
:class:`DevSelectionCallback` scores the dev queries' judged pool with the model as it is
and records the dev measure (its *dev curve*). Step 0, the untrained model, is on every
curve, so training has to beat not training. :func:`select_checkpoint` then picks the
best (learning rate, step) over the grid:

- the highest dev value wins;
- ties go to the earliest step (step 0, the untrained model, before any trained one),
  then to the smallest learning rate: the least training that reaches the value;
- step 0 is one model whatever the learning rate, so choosing it has no learning rate
  (``Choice.learning_rate`` is None): training only hurt on dev, and the untrained model goes to test;
- for a method whose untrained form ranks nothing (``Method.untrained_ranks`` False: DPO's
  implicit reward is 0 everywhere before training, a reward head is new), step 0 is recorded
  but cannot be chosen: the best trained step goes to test, and the statistics hold it
  against the method's untrained counterpart.

Selection never sees a test query: the callback and :func:`dev_measure` take dev query ids
and the splits table, and raise :class:`QueryLeakError` unless every id is a dev query;
:func:`dev_measure` keeps only the dev queries' rows of the tables it is given, so the
scorer it calls cannot be handed a test query.

The records (:func:`selection_record`) are plain dicts for ``training_config.json``.
:class:`DevSelection` carries the configured grid (``train.selection``) and the dev tables
to ``training.trainers.train_reranker``, which trains the grid and saves the choice.
"""

from __future__ import annotations

import logging
import math
import hashlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
from transformers import TrainerCallback

from rerank_audit.evaluation.ranking import parse_measures, per_query_measures
from rerank_audit.text.prompts import corpus_texts
from rerank_audit.training.settings import TrainingSettings

logger = logging.getLogger(__name__)

DEV, TEST = "dev", "test"
UNTRAINED_STEP = 0
# Key of a dev evaluation in the Trainer's log history: "dev_" + the measure's name.
DEV_KEY_PREFIX = "dev_"

Curves = Mapping[float, Mapping[int, float]]


class QueryLeakError(ValueError):
    """Model selection was given a query that is not a dev query (a test or training query)."""


def check_dev_queries(query_ids: Iterable[str], splits: pd.DataFrame) -> list[str]:
    """The distinct ``query_ids`` in order, once each is checked to be a dev query of ``splits``.

    In: query ids; the splits table (query_id, split). Raises QueryLeakError naming the ids
    whose split is test, train or unknown, and ValueError when there is no id at all.
    """
    ids = list(dict.fromkeys(query_ids))
    if not ids:
        raise ValueError("model selection needs dev queries; the dev split is empty")
    split_of = dict(zip(splits.query_id, splits.split))
    wrong = [query_id for query_id in ids if split_of.get(query_id) != DEV]
    if wrong:
        tests = [query_id for query_id in wrong if split_of.get(query_id) == TEST]
        named = ", ".join(f"{query_id} ({split_of.get(query_id, 'not in the splits')})" for query_id in wrong[:5])
        raise QueryLeakError(
            f"model selection was given {len(wrong)} queries that are not dev queries, {len(tests)} of them test "
            f"queries: {named}; selection reads dev queries only"
        )
    return ids


def dev_measure(
    scorer_of: Callable[[Any], Any],
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    qrels: pd.DataFrame,
    dev_query_ids: Sequence[str],
    splits: pd.DataFrame,
    *,
    measure: str,
    relevance_threshold: int,
) -> Callable[[Any], float]:
    """A function model -> the mean ``measure`` over the dev queries of their judged pool, re-ranked by the model.

    In: ``scorer_of(model)`` -> a scorer (``score_pairs``) of the model as it is now; the
    queries (query_id, text), corpus (doc_id, title, text) and qrels (query_id, doc_id,
    relevance) tables, which may hold every split; the dev query ids (checked against
    ``splits``: QueryLeakError otherwise); an ir-measures name (e.g. ``nDCG@5``; binary
    measures count relevance >= ``relevance_threshold``). The judged pool of a query is every
    document judged for it; a dev query without judgements scores 0. Only the dev queries'
    rows are kept: the scorer is only ever given dev queries and their pool, in one
    ``score_pairs`` call per model.
    """
    ids = check_dev_queries(dev_query_ids, splits)
    pool = qrels[qrels.query_id.isin(ids)].reset_index(drop=True)
    texts = queries[queries.query_id.isin(ids)].set_index("query_id").text.reindex(pool.query_id)
    if texts.isna().any():
        raise ValueError(f"dev queries missing from the queries table: {sorted(set(pool.query_id[texts.isna().to_numpy()]))[:5]}")
    missing = sorted(set(pool.doc_id) - set(corpus.doc_id))
    if missing:
        raise ValueError(f"documents of the dev queries' judged pool missing from the corpus: {missing[:5]}")
    query_texts, documents = texts.tolist(), corpus_texts(corpus, pool.doc_id)
    measures = parse_measures([measure], relevance_threshold)

    def value(model) -> float:
        scores = scorer_of(model).score_pairs(query_texts, documents)
        run = pool[["query_id", "doc_id"]].assign(score=pd.Series(scores, dtype="float64").to_numpy())
        return float(per_query_measures(run, pool, ids, measures).value.mean())

    return value


def dev_curve(log_history: Sequence[Mapping[str, Any]], measure_name: str) -> dict[int, float]:
    """{step: dev value} of the evaluations recorded in a Trainer's ``log_history`` (``trainer_log.jsonl`` entries)."""
    key = DEV_KEY_PREFIX + measure_name
    return {int(entry["step"]): float(entry[key]) for entry in log_history if key in entry}


class DevSelectionCallback(TrainerCallback):
    """Scores the model on dev every ``eval_steps`` steps and keeps the best checkpoint of the run.

    ``measure(model)`` -> the dev value (higher is better), e.g. :func:`dev_measure`; it is
    called with the model in eval mode (dropout off), as it is saved (the forward without
    the Trainer's mixed-precision autocast), and the train mode is restored after.
    ``dev_query_ids`` are the queries ``measure`` reads, checked against ``splits``
    (QueryLeakError unless all are dev queries). Evaluated: step 0 before training (the
    untrained model; ``untrained=False`` skips it, for runs of a grid that share it), every
    multiple of ``eval_steps``, and the last step.

    Each value goes into the Trainer's ``state.log_history`` as {"step", "dev_<measure_name>"},
    so it is logged, written with every checkpoint and restored on resume (``curve`` is then
    rebuilt from it, nothing is evaluated twice). A value above every earlier one (ties keep
    the earlier step) makes the Trainer save a checkpoint at that step and records it as
    ``state.best_global_step`` / ``best_metric``; the Trainer then names it
    ``state.best_model_checkpoint`` and never rotates it away. No checkpoint is kept for
    step 0: when step 0 stays best, ``best_model_checkpoint`` is None and the best model is
    the untrained one. With ``untrained_selectable=False`` step 0 is recorded but never best.
    """

    def __init__(self, measure: Callable[[Any], float], dev_query_ids: Sequence[str], splits: pd.DataFrame, *,
                 eval_steps: int, measure_name: str = "measure", untrained: bool = True, untrained_selectable: bool = True):
        if eval_steps < 1:
            raise ValueError(f"eval_steps must be >= 1, got {eval_steps}")
        self.dev_query_ids = check_dev_queries(dev_query_ids, splits)
        self.measure, self.eval_steps, self.measure_name, self.untrained = measure, eval_steps, measure_name, untrained
        self.untrained_selectable = untrained_selectable
        self.curve: dict[int, float] = {}

    @property
    def best_step(self) -> int | None:
        """The selectable step of the highest value so far (the earliest among equals); None before any."""
        selectable = sorted(self._selectable().items())
        return _best_of(selectable)[0] if selectable else None

    def _selectable(self) -> dict[int, float]:
        return {s: v for s, v in self.curve.items() if self.untrained_selectable or s != UNTRAINED_STEP}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.curve = dev_curve(state.log_history, self.measure_name)
        if self.untrained and state.global_step == UNTRAINED_STEP and UNTRAINED_STEP not in self.curve:
            self._evaluate(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step in self.curve or (step % self.eval_steps and step < state.max_steps):
            return
        best = max(self._selectable().values(), default=-math.inf)
        value = self._evaluate(state, model)
        if value > best:
            state.best_metric, state.best_global_step = value, step
            control.should_save = True

    def _evaluate(self, state, model) -> float:
        training = model.training
        model.eval()
        try:
            with _forward_as_saved(model):
                value = float(self.measure(model))
        finally:
            model.train(training)
        if math.isnan(value):
            raise ValueError(f"dev {self.measure_name} at step {state.global_step} is NaN")
        self.curve[state.global_step] = value
        state.log_history.append({"step": state.global_step, DEV_KEY_PREFIX + self.measure_name: value})
        logger.info("step %d: dev %s %.4f over %d queries", state.global_step, self.measure_name, value, len(self.dev_query_ids))
        return value


@contextmanager
def _forward_as_saved(model):
    """``model`` with the forward it has when loaded from disk, for as long as the context lasts.

    With mixed precision, accelerate replaces the model's ``forward`` by one wrapped in
    autocast (keeping the original as ``_original_forward``). A scorer reads the model as it
    will be scored after saving, and the scorers check that their logits equal the
    forward's in float32, which bf16 autocast fails.
    """
    wrapped, original = model.__dict__.get("forward"), model.__dict__.get("_original_forward")
    if wrapped is None or original is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


@dataclass(frozen=True)
class Choice:
    """The (learning rate, step) that goes to test, its dev value and the untrained model's.

    ``learning_rate`` is None when ``step`` is 0: the untrained model, which no learning
    rate made.
    """

    learning_rate: float | None
    step: int
    value: float
    untrained_value: float

    @property
    def trained(self) -> bool:
        return self.step != UNTRAINED_STEP

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"trained": self.trained}


def _best_of(candidates: Sequence[tuple[Any, float]]) -> tuple[Any, float]:
    """The first candidate (key, value) with the highest value: order the candidates by preference."""
    best = candidates[0]
    for candidate in candidates[1:]:
        if candidate[1] > best[1]:
            best = candidate
    return best


def select_checkpoint(curves: Curves, *, untrained_selectable: bool = True) -> Choice:
    """The best (learning rate, step) of a grid by dev value (module docstring: ties, step 0).

    In: ``curves[learning_rate][step]`` = dev value (higher is better); step 0 (the untrained
    model) must be on at least one curve; its value is the highest recorded at step 0 (one
    model: the values agree up to non-deterministic kernels). ``untrained_selectable=False``:
    step 0 is reported (``untrained_value``) but not chosen. Raises ValueError for an
    empty grid, a missing step 0, no trained step when step 0 cannot be chosen, a negative
    step or a NaN value.
    """
    entries = [(float(rate), int(step), float(value)) for rate, curve in curves.items() for step, value in curve.items()]
    bad = [(rate, step, value) for rate, step, value in entries if step < 0 or math.isnan(value)]
    if bad:
        raise ValueError(f"dev curves hold negative steps or NaN values: {bad[:5]}")
    untrained = [value for _, step, value in entries if step == UNTRAINED_STEP]
    if not untrained:
        raise ValueError("no dev curve holds step 0: score the untrained model on dev, so that training has to beat it")
    if max(untrained) - min(untrained) > 1e-9:
        logger.warning("the untrained model's dev values differ between runs (%s); taking the highest", sorted(set(untrained)))
    trained = sorted((step, rate, value) for rate, step, value in entries if step != UNTRAINED_STEP)
    if not (trained or untrained_selectable):
        raise ValueError("the dev curves hold no trained step, and step 0 cannot be chosen for this method")
    candidates = [((UNTRAINED_STEP, None), max(untrained))] if untrained_selectable else []
    (step, rate), value = _best_of(candidates + [((step, rate), value) for step, rate, value in trained])
    return Choice(learning_rate=rate, step=step, value=value, untrained_value=max(untrained))


def curve_rows(curves: Curves) -> list[dict[str, float | int]]:
    """The dev curves as rows {learning_rate, step, value}, by learning rate then step."""
    return [
        {"learning_rate": float(rate), "step": int(step), "value": float(value)}
        for rate in sorted(curves) for step, value in sorted(curves[rate].items())
    ]  # fmt: skip


def selection_record(grid: Mapping[str, Any], curves: Curves, choice: Choice, *, measure: str, dev_query_ids: Sequence[str]) -> dict[str, Any]:
    """The ``selection`` entry of ``training_config.json``: plain JSON values.

    In: the grid as configured (e.g. {"learning_rates": [...], "epochs": 3, "eval_steps": 20}),
    the dev curves, the choice, the measure's name and the dev query ids. Out: {"measure",
    "dev_queries" (their number), "grid", "dev_curve" (``curve_rows``), "choice"
    (``Choice.as_dict``)}.
    """
    return {
        "measure": measure,
        "dev_queries": len(dev_query_ids),
        "grid": {key: list(value) if isinstance(value, (list, tuple)) else value for key, value in grid.items()},
        "dev_curve": curve_rows(curves),
        "choice": choice.as_dict(),
    }


@dataclass(frozen=True, eq=False)
class DevSelection:
    """Model selection as configured (``train.selection``) with the dev tables it scores on.

    ``learning_rates`` and ``epochs``: the grid, the same for every method (they replace each
    method's ``learning_rate``, ``epochs`` and ``max_steps``); ``eval_steps``: steps between
    dev evaluations; ``measure``: the ir-measures name the choice maximises (binary measures
    count relevance >= ``relevance_threshold``). ``queries``, ``corpus``, ``qrels``: the
    ingested tables (any split: only the dev queries' rows are read); ``splits``: the split
    table, whose dev queries are the ones scored.
    """

    learning_rates: tuple[float, ...]
    epochs: float
    eval_steps: int
    measure: str
    queries: pd.DataFrame = field(repr=False)
    corpus: pd.DataFrame = field(repr=False)
    qrels: pd.DataFrame = field(repr=False)
    splits: pd.DataFrame = field(repr=False)
    relevance_threshold: int = 1

    @classmethod
    def from_config(cls, selection: Mapping[str, Any], **tables) -> "DevSelection":
        """From the ``train.selection`` mapping {learning_rates, epochs, eval_steps, measure} and the tables."""
        return cls(
            learning_rates=tuple(float(rate) for rate in selection["learning_rates"]),
            epochs=float(selection["epochs"]),
            eval_steps=int(selection["eval_steps"]),
            measure=str(selection["measure"]),
            **tables,
        )

    def __post_init__(self):
        if not self.learning_rates or len(set(self.learning_rates)) != len(self.learning_rates):
            raise ValueError(f"train.selection.learning_rates: give one or more distinct values, got {list(self.learning_rates)}")

    @property
    def dev_query_ids(self) -> list[str]:
        """The dev queries of the split, in split order."""
        return self.splits.query_id[self.splits.split == DEV].tolist()

    @property
    def grid(self) -> dict[str, Any]:
        """The grid as configured, for ``training_config.json``."""
        return {"learning_rates": list(self.learning_rates), "epochs": self.epochs, "eval_steps": self.eval_steps, "measure": self.measure}

    def settings_of(self, settings: TrainingSettings, learning_rate: float) -> TrainingSettings:
        """A method's settings for one run of the grid: its own, with the grid's learning rate and epochs (no max_steps)."""
        return settings.but(learning_rate=learning_rate, epochs=self.epochs, max_steps=None)

    def fingerprint(self) -> dict[str, Any]:
        """What makes two selections the same (resuming a run of the grid reuses its recorded dev curve)."""
        ids = self.dev_query_ids
        pool = self.qrels[self.qrels.query_id.isin(ids)]
        rows = [
            self.queries[self.queries.query_id.isin(ids)][["query_id", "text"]],
            pool[["query_id", "doc_id", "relevance"]],
            self.corpus[self.corpus.doc_id.isin(pool.doc_id)][["doc_id", "title", "text"]],
        ]
        digest = hashlib.sha1()
        for table in rows:
            digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
        return {"eval_steps": self.eval_steps, "measure": self.measure, "relevance_threshold": self.relevance_threshold, "dev_sha1": digest.hexdigest()}

    def measure_of(self, scorer_of: Callable[[Any], Any]) -> Callable[[Any], float]:
        """:func:`dev_measure` of these dev queries: model -> the mean dev ``measure`` of the model's scorer."""
        return dev_measure(
            scorer_of, self.queries, self.corpus, self.qrels, self.dev_query_ids, self.splits,
            measure=self.measure, relevance_threshold=self.relevance_threshold,
        )

"""A training run's folders: what makes two runs the same run, the checkpoint to resume, and what goes.

Checkpoints go to ``output_dir/checkpoints`` (the last ``KEEP_CHECKPOINTS`` kept; with
model selection one folder per learning rate, ``lr-<rate>``). A run resumes from the newest
complete checkpoint of the same run (its fingerprint, ``run.json``, unchanged); checkpoints
of another run are removed. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from rerank_audit.training.fit_documents import training_columns
from rerank_audit.training.settings import TrainingSettings

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
RUN_FINGERPRINT = "run.json"  # inside checkpoints/: what the checkpoints were trained on
KEEP_CHECKPOINTS = 2


def run_fingerprint(method: str, base_model_path, data: pd.DataFrame, settings: TrainingSettings, seed: int) -> dict:
    """What makes two runs the same run: resuming is only safe between them."""
    rows = pd.util.hash_pandas_object(data[training_columns(method)], index=False).to_numpy()
    return {
        "method": method,
        "base_model": str(base_model_path),
        "seed": seed,
        "data_sha1": hashlib.sha1(rows.tobytes()).hexdigest(),
    } | settings_fingerprint(settings)


def settings_fingerprint(settings: TrainingSettings) -> dict:
    """The settings part of a run's fingerprint (JSON values, as ``run.json`` reads back)."""
    return {"hyper": json.loads(json.dumps(settings.as_dict()))}


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def resumable_checkpoint(checkpoints: Path, fingerprint: dict) -> Path | None:
    """The newest complete checkpoint of this run, or None; other checkpoints are removed.

    Trainer writes ``trainer_state.json`` last, so a checkpoint folder without a readable one
    was cut off mid-save (the process was killed) and cannot be resumed from. Checkpoints of
    another run (its ``run.json`` differs) would continue the wrong training.
    """
    found = sorted(checkpoints.glob("checkpoint-*"), key=checkpoint_step) if checkpoints.is_dir() else []
    if not found:
        return None
    recorded = checkpoints / RUN_FINGERPRINT
    if not recorded.exists() or json.loads(recorded.read_text()) != fingerprint:
        logger.warning("%s: checkpoints of a different run (method, base, hyper, seed or data changed); training from scratch", checkpoints)
        for path in found:
            shutil.rmtree(path)
        return None
    for path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return path
        except (OSError, ValueError):
            logger.warning("removing incomplete checkpoint %s", path)
            shutil.rmtree(path)
    return None


def remove_previous_outputs(output_dir: Path) -> None:
    """Remove the files of an earlier run from ``output_dir`` (sub-folders, i.e. checkpoints, stay).

    A stale ``adapter_config.json`` next to a new full model would make loaders take the
    folder for an adapter; a stale ``training_config.json`` would mark an unfinished run done.
    """
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.is_file() or path.is_symlink():
                path.unlink()



def run_folder(learning_rate: float) -> str:
    """The checkpoint folder of one learning rate of a selection grid (under ``checkpoints``)."""
    return f"lr-{learning_rate:g}"


def remove_runs(checkpoints: Path, keep: list[str]) -> None:
    """Remove the checkpoints of runs that this training does not continue.

    With selection (``keep``: the grid's run folders) the top-level checkpoints of a run
    without selection and the folders of other learning rates go; without it (``keep``
    empty) every grid folder goes.
    """
    if not checkpoints.is_dir():
        return
    for path in checkpoints.iterdir():
        stale = path.name.startswith("lr-") and path.name not in keep
        if path.is_dir() and (stale or (keep and path.name.startswith("checkpoint-"))):
            logger.info("removing checkpoints of another run: %s", path)
            shutil.rmtree(path)


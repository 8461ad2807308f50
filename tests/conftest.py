import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import build_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLIMATE_FEVER = SHARED_DATA / "climate-fever" / "climate-fever.jsonl"
BUNDLED = REPO / "resources" / "models" / "smollm2-135m-instruct"


def pytest_collection_modifyitems(items):
    """Slow tests first. pytest-xdist's worksteal gives the first worker the first half of the list (the slow
    tests) and the second the rest; once the second is done with its short tests it takes over half of what the
    first has not started, so the long runs are spread over both workers and none is left for the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, into ``folder`` (returned). With pytest-xdist
    workers it is built by the first worker that asks, under a file lock, and shared by the others."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A folder holding a tiny random-weight Llama causal LM and its tokenizer."""
    return built_once(tmp_path_factory, "tiny-lm", build_tiny_model)


@pytest.fixture(scope="session")
def device() -> str:
    """Where model tests run their models: CUDA when a GPU is visible, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def tokenizer(tiny_lm_dir):
    """The tiny model's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm_dir)


@pytest.fixture(scope="session")
def converted_bundled(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from its GGUF into tmp, once per test session (≈25 s): the conversion's own test reads it."""
    pytest.importorskip("gguf")
    from rerank_audit.models.bundled import convert_bundled

    return built_once(tmp_path_factory, "bundled", lambda folder: convert_bundled(folder / "smollm2-135m-instruct")) / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def bundled_dir(request) -> Path:
    """The converted SmolLM2-135M-Instruct: the pipeline's folder (resources/models/), else ``converted_bundled``
    (a fresh clone has no resources/models/), so the suite converts it at most once."""
    if (BUNDLED / "model.safetensors").is_file():
        return BUNDLED
    return request.getfixturevalue("converted_bundled")


@pytest.fixture(scope="session")
def climate_fever() -> Path:
    """The real CLIMATE-FEVER jsonl from shared/data (read by path, never copied)."""
    if not CLIMATE_FEVER.exists():
        pytest.skip(f"{CLIMATE_FEVER} is not present")
    return CLIMATE_FEVER

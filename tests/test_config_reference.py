"""docs/configuration.md is generated from the config schema, and the schema's defaults are config.yaml's values."""

import yaml

from rerank_audit.config_reference import defaults, load_schema, render, resolve, undocumented
from workflow_runner import REPO

PAGE = REPO / "docs" / "configuration.md"
CONFIG = REPO / "config" / "config.yaml"


def _value(config: dict, path: str):
    for part in path.split("."):
        if not isinstance(config, dict) or part not in config:
            raise KeyError(path)
        config = config[part]
    return config


def test_the_reference_page_is_the_schema_rendered():
    assert PAGE.read_text() == render(load_schema()), "regenerate: .venv/bin/python -m rerank_audit.config_reference > docs/configuration.md"


def test_every_key_says_what_it_means():
    assert undocumented(load_schema()) == []


def test_schema_defaults_are_the_default_config_values():
    config = yaml.safe_load(CONFIG.read_text())
    found = {path: value for path, value in defaults(load_schema()).items() if "<" not in path}
    present = {path: value for path, value in found.items() if _present(config, path)}
    assert {path: _value(config, path) for path in present} == present
    # Every required key outside the per-dataset and per-method blocks is defaulted (documented) in the schema.
    schema = load_schema()
    required = [
        f"{top}.{key}"
        for top, node in schema["properties"].items()
        for key in resolve(node, schema).get("required", [])
        if top != "datasets" and key not in ("defaults", "methods")
    ]
    assert [path for path in required if path not in found] == []


def _present(config, path):
    try:
        _value(config, path)
        return True
    except KeyError:
        return False

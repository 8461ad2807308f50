"""docs/configuration.md, generated from workflow/schemas/config.schema.yaml: every key, its type, default and meaning.

The schema is the one home of the config's keys; this page is rendered from it and a test
fails when the two disagree. Regenerate with::

    .venv/bin/python -m rerank_audit.config_reference > docs/configuration.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
HEADER = """# Configuration reference

Every key of a config file, generated from `workflow/schemas/config.schema.yaml` (regenerate with
`.venv/bin/python -m rerank_audit.config_reference > docs/configuration.md`; `tests/test_config_reference.py`
fails when this page and the schema disagree). A config is checked against the schema, then by
`rerank_audit.config`, before any job runs. `config/config.yaml` holds the defaults; the other files in
`config/` are experiments and overlays (pass them with `--configfile`).
"""


def load_schema(path: Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(path).read_text())


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a local ``$ref`` replaced by its target (its own description kept)."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def type_of(node: dict) -> str:
    """A short type: the enum's values, the JSON types, or the alternatives of anyOf / oneOf."""
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " or ".join(type_of(option) for option in node[key])
    kind = node.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in node:
        return f"list of {type_of(node['items'])}"
    return " or ".join(kinds)


def keys(node: dict, schema: dict, path: str) -> Iterator[tuple[str, dict]]:
    """(dotted path, node) of every documented key below ``node``; ``<name>`` stands for a free key."""
    node = resolve(node, schema)
    for name, child in node.get("properties", {}).items():
        child = resolve(child, schema)
        yield f"{path}{name}", child
        yield from keys(child, schema, f"{path}{name}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or "$ref" in extra):
        placeholder = "<method>" if path.endswith("methods.") else "<name>"
        yield from keys(extra, schema, f"{path}{placeholder}.")


def render(schema: dict) -> str:
    """The reference page: one table per top-level key."""
    lines = [HEADER]
    required_top = set(schema.get("required", []))
    for top, node in schema["properties"].items():
        node = resolve(node, schema)
        lines += ["", f"## `{top}`", "", _flat(node.get("description", "")) + (" Required." if top in required_top else ""), ""]
        rows = list(keys(node, schema, f"{top}."))
        if not rows:
            lines += [f"Type: {type_of(node)}." + (f" Default: `{json.dumps(node['default'])}`." if "default" in node else "")]
            continue
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for path, child in rows:
            default = f"`{json.dumps(child['default'])}`" if "default" in child else "–"
            lines.append(f"| `{path}` | {type_of(child)} | {default} | {_flat(child.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def undocumented(schema: dict) -> list[str]:
    """Keys without a description (each key of the page must say what it means)."""
    missing = [top for top, node in schema["properties"].items() if not resolve(node, schema).get("description")]
    for top, node in schema["properties"].items():
        missing += [path for path, child in keys(node, schema, f"{top}.") if not child.get("description")]
    return missing


def defaults(schema: dict) -> dict[str, Any]:
    """Dotted path -> schema default, for every key that has one."""
    found = {top: resolve(node, schema)["default"] for top, node in schema["properties"].items() if "default" in resolve(node, schema)}
    for top, node in schema["properties"].items():
        found |= {path: child["default"] for path, child in keys(node, schema, f"{top}.") if "default" in child}
    return found


def _flat(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.write(render(load_schema()))

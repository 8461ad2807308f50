# Helpers shared by all rules: config validation, paths, input functions.
import os

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


DATASETS = list(config["datasets"])


wildcard_constraints:
    dataset="|".join(DATASETS),


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def dataset_format(wildcards):
    return dataset_config(wildcards)["format"]


def dataset_options(wildcards):
    return dataset_config(wildcards).get("options", {})


def download_path(dataset, role):
    url = config["datasets"][dataset]["download"][role]["url"]
    return f"resources/downloads/{dataset}/{role}/{os.path.basename(url)}"


def source_files(wildcards):
    """Each raw source of a dataset: its configured path, or the download when that path is absent."""
    spec = dataset_config(wildcards)
    downloads = spec.get("download", {})
    return {
        role: path if os.path.exists(path) or role not in downloads else download_path(wildcards.dataset, role)
        for role, path in spec["sources"].items()
    }


def download_spec(wildcards):
    return config["datasets"][wildcards.dataset]["download"][wildcards.role]


def relevance_threshold(wildcards):
    return dataset_config(wildcards).get("relevance_threshold", 1)


def runs_to_evaluate(wildcards):
    return [f"results/{wildcards.dataset}/retrieve/bm25.parquet"]


def final_outputs():
    return expand("results/{dataset}/evaluate/metrics.md", dataset=DATASETS)

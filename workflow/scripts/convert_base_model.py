from rerank_audit.logs import log_to
from rerank_audit.models.bundled import convert_bundled

log = log_to(snakemake.log[0])
convert_bundled(snakemake.output[0], name=snakemake.wildcards.bundled)

from rerank_audit.logs import log_to
from rerank_audit.data.download import download_verified

log = log_to(snakemake.log[0])
download_verified(snakemake.params.spec["url"], snakemake.params.spec["sha256"], snakemake.output[0])

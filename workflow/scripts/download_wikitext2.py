"""Rule download_wikitext2: fetch train/valid/test from params.url, verify SHA-256."""
from pathlib import Path

from lstmscope.download import download_files
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "download_wikitext2") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    outputs = {Path(o).name: o for o in snakemake.output}  # noqa: F821
    checksums = {f"{split}.txt": p.sha256[split] for split in ("train", "valid", "test")}
    log.info("fetching %s from %s", ", ".join(checksums), p.url)
    download_files(p.url, checksums, outputs, timeout=float(p.timeout_s), retries=int(p.retries))

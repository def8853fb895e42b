"""Rule download_wikitext2: fetch train/valid/test from data.url, verify SHA-256 (params.sha256)."""
from pathlib import Path

from lstmscope.download import download_files
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "download_wikitext2") as log:  # noqa: F821
    data = snakemake.config["data"]  # noqa: F821  (url, timeout and retries are not params: see the rule)
    outputs = {Path(o).name: o for o in snakemake.output}  # noqa: F821
    checksums = {f"{split}.txt": snakemake.params.sha256[split] for split in ("train", "valid", "test")}  # noqa: F821
    log.info("fetching %s from %s", ", ".join(checksums), data["url"])
    download_files(data["url"], checksums, outputs, timeout=float(data["timeout_s"]), retries=int(data["retries"]))

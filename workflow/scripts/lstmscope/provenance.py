"""Provenance recorded inside every HDF5 and metrics file, and beside every table (``record_tables``).

Provenance answers: which configuration, seed, code and checkpoint produced a file.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .atomic import table_record, write_text

_PACKAGE_DIR = Path(__file__).resolve().parent


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_digest(modules: Sequence[str] | None = None) -> str:
    """SHA-256 over the library's own source files (stable across checkouts); ``modules``: only those."""
    h = hashlib.sha256()
    files = sorted(_PACKAGE_DIR.glob("*.py")) if modules is None else [_PACKAGE_DIR / f"{m}.py" for m in modules]
    for src in files:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    return h.hexdigest()


def git_commit() -> str:
    """The commit of the checkout the library lives in, with ``-dirty`` if its ``workflow/`` (the rules, the scripts
    that hand their settings to the library, the library) is modified; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(_PACKAGE_DIR.parent.parent)],
            cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> dict[str, str]:
    """Version, git commit and library source digest."""
    return {
        "lstmscope_version": __version__,
        "git_commit": git_commit(),
        "library_sha256": library_digest(),
    }


NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "h5py")  # what computes or stores the numbers of every stage


def _version(package: str) -> str:
    """A package's version from its metadata (importing torch would cost seconds in analysis jobs)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(**fields: Any) -> dict[str, Any]:
    """A provenance record: the given fields plus code version, time, python and the numeric packages' versions."""
    record: dict[str, Any] = dict(fields)
    record.update(code_version())
    record["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record["python"] = platform.python_version()
    for package in NUMERIC_PACKAGES:
        record[package] = _version(package)
    return record


def to_json(record: dict[str, Any]) -> str:
    """Serialise a provenance record (sorted keys) for an HDF5 attribute."""
    return json.dumps(record, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    """A job's param as JSON holds it (Snakemake's lists and dicts; anything else as its text)."""
    return json.loads(json.dumps(value, default=str))


def record_tables(job: Any, **fields: Any) -> list[Path]:
    """Beside every CSV table a pipeline job has written (``job``: the job's ``snakemake`` object, read for its
    ``rule``, ``wildcards``, ``params``, ``input`` and ``output``), write ``<table>.provenance.json``, since a CSV has
    no place for it: the table's SHA-256 (a record left beside another version of the table is told apart), the rule
    and wildcards, the job's settings (its params by name), the SHA-256 of every input file but the library's own
    modules (``library_sha256`` covers those; a folder is named, not hashed), code version and time, and ``fields``
    (what else the numbers depend on, e.g. the versions of the libraries that computed them). Returns the records."""
    settings = {name: _plain(value) for name, value in job.params.items() if name != "settings"}
    files = [path for path in job.input
             if not (Path(path).suffix == ".py" and Path(path).resolve().parent == _PACKAGE_DIR)]
    inputs = {str(path): ("a folder" if os.path.isdir(path) else sha256_file(path)) for path in files}
    return [record_table(table, rule=str(job.rule), wildcards={k: str(v) for k, v in job.wildcards.items()},
                         settings=settings, inputs=inputs, models=models_of(files), **fields)
            for table in (Path(p) for p in job.output if str(p).endswith(".csv"))]


MODEL_FIELDS = ("dropout", "replicate", "seed", "checkpoint_sha256")  # what a table's record names of each model


def models_of(paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """The models whose numbers the files ``paths`` hold, by name, each with its dropout, replicate, seed and
    checkpoint SHA-256, read from the files' own provenance: an activations file's (a histograms or ablation file
    carries it as ``activations_provenance``), a training's ``metrics.json`` or a test's ``test.json``, and a table's
    record (``models``, so a table made from tables names them too). Other files (the text, the vocabulary, a
    checkpoint) name none."""
    models: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        for record in _model_records(path):
            if isinstance(record, dict) and record.get("model") and record.get("checkpoint_sha256"):
                models.setdefault(str(record["model"]), {k: record.get(k) for k in MODEL_FIELDS})
    return dict(sorted(models.items()))


def _model_records(path: Path) -> list[Any]:
    """The records of :func:`models_of` in one file; none where the file holds no readable one (its job's reader
    refused a damaged input before; this runs after the outputs are written and must not fail then)."""
    try:
        if path.suffix in (".h5", ".hdf5") and path.is_file():
            import h5py

            with h5py.File(path, "r") as f:
                record = json.loads(f.attrs["provenance"]) if "provenance" in f.attrs else {}
            return [record.get("activations_provenance", record)] if isinstance(record, dict) else []
        if path.suffix == ".json" and path.is_file():
            record = json.loads(path.read_text())
            if isinstance(record, dict) and isinstance(record.get("provenance"), dict):
                return [{**record, "checkpoint_sha256": record["provenance"].get("checkpoint_sha256")}]
        elif path.suffix == ".csv" and table_record(path).is_file():
            models = json.loads(table_record(path).read_text()).get("models")
            if isinstance(models, dict):
                return [{**fields, "model": name} for name, fields in models.items() if isinstance(fields, dict)]
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, a record not an object
        pass
    return []


def record_table(table: str | os.PathLike, **fields: Any) -> Path:
    """Write ``<table>.provenance.json`` beside a CSV table: its name and SHA-256, ``fields`` (what made it) and
    the code version; returns the record's path. For a table a command wrote, ``fields`` name the command, its
    settings and its inputs' SHA-256."""
    table = Path(table)
    record = provenance(table=table.name, table_sha256=sha256_file(table), **fields)
    path = table_record(table)
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path

"""Shared fixtures and helpers for the workflow tests (Snakemake run through its command line).

Helpers (import them with ``from conftest import ...``):

- ``copy_repo(dest)``            a copy of the workflow (Snakefile, workflow/, config, profiles, presets,
                                 envs, tests/config) with the tiny config's data URL pointed at the local
                                 WikiText-2; never results/, .snakemake/ or .venv/
- ``snakemake(workdir, *args)``  run the snakemake command line in a copy (its own library first on the
                                 Python path); returns the CompletedProcess, fails the test on error
- ``TINY``                       the arguments that select the tiny experiment
- ``planned_jobs(workdir, ...)`` the jobs a dry run plans: [PlannedJob(rule, wildcards, reason)]
- ``planned_rules(workdir, ...)``  Counter rule -> number of planned jobs
- ``rule_graph(workdir, ...)``   {rule: set of rules that consume its output}
- ``downstream(graph, rules)``   the rules and everything that depends on them
- ``detailed_summary(workdir)``  {output file: OutputRecord(rule, inputs, status, plan)}
- ``edit_yaml(path, edit)``      change a YAML file (a config) in place
- ``assert_same_results(a, b)``  tables (CSV) and HDF5 files under results/ equal in content
- ``assert_same_models(a, b)``   checkpoints with equal weights and records, equal perplexities
- ``skip_or_fail(reason)``       skip locally, fail on CI (CI=true)

Fixtures: ``wikitext2`` (the local data folder), ``tiny_run`` (session: one complete local run of the
tiny config, made once and shared by the test workers), ``tiny_workdir`` (a pristine copy of that finished
run in a folder of the worker's, for a test to edit and re-plan; ``restored(tiny_run, folder)`` makes another).
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The pipeline's CPU kernels in the test process too (and, through the environment, in every process a
# test starts): importing lstmscope pins them before any test's first tensor operation, so in-process
# references and the jobs' outputs are computed alike.
import lstmscope  # noqa: E402,F401
from wikitext_data import WIKITEXT, complete, missing  # noqa: E402

# Started in the background (`nohup pytest &`, a scheduler's batch job), a process has Ctrl-C ignored, and so has
# every process it starts: the tests that stop a command or job with Ctrl-C would see it go on. Ctrl-C as in a
# terminal, here and (an ignored signal is inherited, a handled one is not) in the processes the tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
ON_CI = os.environ.get("CI") == "true"
WIKITEXT2 = WIKITEXT

# The tiny experiment: a 2-model, hidden-16 version of every stage; the second file only points
# data.url at the local copy of WikiText-2 (written by copy_repo).
TINY = ("--configfile", "tests/config/tiny.yaml", "tests/config/local-data.yaml")

# What a copy of the workflow needs. Not results/, .snakemake/, .venv/ or the unit tests.
_COPIED = ["Snakefile", "config.yaml", "pyproject.toml", "workflow", "profiles", "presets", "envs", "tests/config"]
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


def skip_or_fail(reason: str):
    """Skip the test with ``reason``; on CI (CI=true) a missing prerequisite is a failure instead."""
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


def run_unprivileged(command: list[str], base: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``command`` as a user a file's or folder's mode binds: root reads every file, so as root it runs as
    nobody (setpriv), with its home and matplotlib's cache in ``base``/home (``base`` outside root's own
    /tmp/pytest-of-root, which nobody may not enter; what the command reads must be there or elsewhere readable)."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            skip_or_fail("setpriv (util-linux) is needed to run the command as a user a file's mode binds")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    base.chmod(0o755)
    home = base / "home"
    home.mkdir(mode=0o777, exist_ok=True)
    home.chmod(0o777)
    env = dict(os.environ, MPLCONFIGDIR=str(home), HOME=str(home))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def snakemake_command() -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def copy_repo(dest: Path, data: Path = WIKITEXT2) -> Path:
    """Copy the workflow into ``dest`` (created) and point the tiny config's data URL at ``data``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORED, dirs_exist_ok=True)
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "tests" / "config" / "local-data.yaml").write_text(
        f"# written by tests/conftest.py: the tiny experiment reads the local WikiText-2 copy\n"
        f"data:\n  url: {data.resolve()}\n")
    return dest


def snakemake_env(workdir: Path) -> dict[str, str]:
    """The environment for a snakemake run in a copy (the workflow itself puts the copy's own library
    first on every job's Python path; ``test_rerun`` checks that it does)."""
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``snakemake *args`` in ``workdir``; on a non-zero exit (with check) fail with its output."""
    cmd = [*snakemake_command(), *args]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else snakemake_env(workdir))
    if check and r.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed with exit code {r.returncode} in {workdir}\n"
                    f"--- stdout ---\n{r.stdout[-8000:]}\n--- stderr ---\n{r.stderr[-12000:]}", pytrace=False)
    return r


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        wc = ",".join(f"{k}={v}" for k, v in self.wildcards.items())
        return f"{self.rule}[{wc}] ({self.reason})"


_JOB_HEADER = re.compile(r"^(\s*)(?:localrule|rule|checkpoint) (\w+):\s*$")


def parse_dry_run(text: str) -> list[PlannedJob]:
    """The jobs listed by ``snakemake -n``: one block per job, ``rule NAME:`` then more deeply indented
    ``key: value`` lines (jobs of a group are listed, indented, under "Group job summary")."""
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    indent = 0
    for line in text.splitlines():
        m = _JOB_HEADER.match(line)
        if m:
            current = PlannedJob(m.group(2))
            indent = len(m.group(1))
            jobs.append(current)
            continue
        if current is None:
            continue
        body = line.strip()
        if not body or len(line) - len(line.lstrip()) <= indent:
            current = None
            continue
        if body.startswith("wildcards:"):
            for item in body[len("wildcards:"):].split(","):
                if "=" in item:
                    k, v = item.split("=", 1)
                    current.wildcards[k.strip()] = v.strip()
        elif body.startswith("reason:"):
            current.reason = body[len("reason:"):].strip()
        elif body.startswith("input:"):
            current.inputs = [x.strip() for x in body[len("input:"):].split(",") if x.strip()]
        elif body.startswith("output:"):
            current.outputs = [x.strip() for x in body[len("output:"):].split(",") if x.strip()]
    return jobs


def parse_job_stats(text: str) -> Counter:
    """The "Job stats" table of a dry run: rule -> count (without ``total``)."""
    counts: Counter = Counter()
    if "Job stats:" not in text:
        return counts
    table = text.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def planned_jobs(workdir: Path, *args: str, config: tuple[str, ...] = TINY) -> list[PlannedJob]:
    """The jobs a dry run plans (the target rule ``all`` left out), checked against its "Job stats" table."""
    r = snakemake(workdir, "-n", *config, *args)
    text = r.stdout + "\n" + r.stderr
    jobs = parse_dry_run(text)
    if not jobs and "Nothing to be done" not in text:
        pytest.fail(f"could not read the dry run's plan:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}", pytrace=False)
    stats = parse_job_stats(text)
    if Counter(j.rule for j in jobs) != stats:
        pytest.fail(f"dry run: listed jobs {dict(Counter(j.rule for j in jobs))} do not match its Job stats {dict(stats)}",
                    pytrace=False)
    return [j for j in jobs if j.rule != "all"]


def planned_rules(workdir: Path, *args: str, config: tuple[str, ...] = TINY) -> Counter:
    return Counter(j.rule for j in planned_jobs(workdir, *args, config=config))


def rule_graph(workdir: Path, *args: str, config: tuple[str, ...] = TINY) -> dict[str, set[str]]:
    """{rule: rules that take its output as input}, from ``snakemake --rulegraph`` (all jobs, forced)."""
    r = snakemake(workdir, "--rulegraph", "-F", *config, *args)
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', r.stdout, flags=re.M))
    graph: dict[str, set[str]] = {name: set() for name in labels.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", r.stdout, flags=re.M):
        graph[labels[a]].add(labels[b])
    if not graph:
        pytest.fail(f"no rule graph in snakemake's output:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}", pytrace=False)
    return graph


def downstream(graph: dict[str, set[str]], rules) -> set[str]:
    """``rules`` and every rule that (transitively) consumes their output, without ``all``."""
    seen: set[str] = set()
    todo = list(rules)
    while todo:
        r = todo.pop()
        if r in seen:
            continue
        seen.add(r)
        todo.extend(graph.get(r, ()))
    seen.discard("all")
    return seen


@dataclass
class OutputRecord:
    path: str
    rule: str
    inputs: list[str]
    status: str
    plan: str


def detailed_summary(workdir: Path, *args: str, config: tuple[str, ...] = TINY) -> dict[str, OutputRecord]:
    """``snakemake --detailed-summary``: {output file: its rule, input files, status and plan}."""
    r = snakemake(workdir, "--detailed-summary", *config, *args)
    out: dict[str, OutputRecord] = {}
    lines = [line for line in r.stdout.splitlines() if "\t" in line]
    header = lines[0].split("\t") if lines else []
    if header[:3] != ["output_file", "date", "rule"]:
        pytest.fail(f"unexpected --detailed-summary output:\n{r.stdout[:3000]}", pytrace=False)
    col = {name: i for i, name in enumerate(header)}
    for line in lines[1:]:
        f = line.split("\t")
        inputs = [x for x in f[col["input-file(s)"]].split(",") if x and x != "-"]
        out[f[0]] = OutputRecord(f[0], f[col["rule"]], inputs, f[col["status"]], f[col["plan"]])
    return out


def edit_yaml(path: Path, edit) -> None:
    """Load a YAML file, let ``edit(data)`` change it in place, write it back."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    edit(data)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


# ------------------------------------------------------------------------------ result comparison
# Columns and attributes that record how long something took or when it ran: they differ between
# two runs of the same job and are left out of "identical in content".
VOLATILE = re.compile(r"(^|_)(seconds|secs|time|timestamp|created_utc|duration|elapsed|hostname|host)($|_)")
# Inside provenance records also the commit and the digests of input FILES made by earlier jobs: their bytes
# differ while their content is the same (an HDF5 file or table records when it was written). The data themselves
# are compared. A checkpoint's digest is kept: the same weights and record give the same bytes
# (test_rerun's test_the_same_checkpoint_is_written_byte_for_byte), so every file names the same checkpoint.
_PROVENANCE_VOLATILE = {"created_utc", "git_commit"}
_FILE_DIGEST = re.compile(r"(activations|histograms|input|file)s?_sha256$")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: v for k, v in row.items() if not VOLATILE.search(k)} for row in csv.DictReader(fh)]


def _stable(record):
    """A provenance record without its volatile fields, at any depth."""
    if isinstance(record, dict):
        return {k: _stable(v) for k, v in record.items()
                if k not in _PROVENANCE_VOLATILE and not VOLATILE.search(k) and not _FILE_DIGEST.search(k)}
    if isinstance(record, list):
        return [_stable(v) for v in record]
    return record


def _attr_value(name: str, value):
    import json

    import numpy as np

    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value[:1] == "{":
        try:
            record = json.loads(value)
        except ValueError:
            return value
        if isinstance(record, dict):
            return _stable(record)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def h5_content(path: Path) -> dict[str, object]:
    """Every dataset (as an array) and attribute of an HDF5 file, keyed by its path, volatile attributes left out."""
    import h5py

    out: dict[str, object] = {}

    def attrs(name, obj):
        for k, v in obj.attrs.items():
            if not VOLATILE.search(k) and not _FILE_DIGEST.search(k):
                out[f"{name}@{k}"] = _attr_value(k, v)

    with h5py.File(path, "r") as f:
        attrs("/", f)

        def visit(name, obj):
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
    return out


def assert_same_results(a: Path, b: Path, patterns=("**/*.csv", "**/*.h5")) -> list[str]:
    """Every file matching ``patterns`` under a/results exists under b/results with the same content
    (CSV: same rows, volatile columns left out; HDF5: same datasets and attributes). Returns the files compared."""
    import numpy as np

    ra, rb = Path(a) / "results", Path(b) / "results"
    files = sorted({p.relative_to(ra) for pat in patterns for p in ra.glob(pat)
                    if "logs" not in p.parts and "benchmarks" not in p.parts})
    assert files, f"no files matching {patterns} under {ra}"
    problems = []
    for rel in files:
        fa, fb = ra / rel, rb / rel
        if not fb.exists():
            problems.append(f"{rel}: missing in {rb}")
            continue
        if rel.suffix == ".csv":
            if _read_csv(fa) != _read_csv(fb):
                problems.append(f"{rel}: tables differ")
        elif rel.suffix == ".h5":
            ca, cb = h5_content(fa), h5_content(fb)
            if ca.keys() != cb.keys():
                problems.append(f"{rel}: different members {sorted(set(ca) ^ set(cb))}")
                continue
            for k in ca:
                va, vb = ca[k], cb[k]
                if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                    same = np.array_equal(np.asarray(va), np.asarray(vb), equal_nan=np.asarray(va).dtype.kind == "f")
                else:
                    same = va == vb
                if not same:
                    problems.append(f"{rel}: {k} differs")
    assert not problems, "results differ:\n  " + "\n  ".join(problems)
    return [str(f) for f in files]


def assert_same_models(a: Path, b: Path) -> list[str]:
    """Every checkpoint under a/results/models has the same weights and record under b, and the same
    perplexities in its metrics.json and test.json, the same bytes, which both runs' metrics and test files name.
    Returns the models compared."""
    import json

    import torch

    names = sorted(p.parent.name for p in (Path(a) / "results" / "models").glob("*/model.pt"))
    assert names, f"no checkpoints under {a}/results/models"
    problems = []
    for name in names:
        ca = torch.load(Path(a) / "results/models" / name / "model.pt", weights_only=True)
        cb = torch.load(Path(b) / "results/models" / name / "model.pt", weights_only=True)
        if {k: v for k, v in ca.items() if k != "state_dict"} != {k: v for k, v in cb.items() if k != "state_dict"}:
            problems.append(f"{name}: checkpoint records differ")
        sa, sb = ca["state_dict"], cb["state_dict"]
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            problems.append(f"{name}: weights differ")
        ma, mb = (json.loads((Path(x) / "results/models" / name / "metrics.json").read_text()) for x in (a, b))
        ta, tb = (json.loads((Path(x) / "results/models" / name / "test.json").read_text()) for x in (a, b))
        if (ma["valid_ppl"], ta["test_ppl"]) != (mb["valid_ppl"], tb["test_ppl"]):
            problems.append(f"{name}: perplexities differ")
        # the same bytes, which both runs' metrics and test files name
        digest = hashlib.sha256((Path(a) / "results/models" / name / "model.pt").read_bytes()).hexdigest()
        if hashlib.sha256((Path(b) / "results/models" / name / "model.pt").read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: checkpoint bytes differ")
        named = {x["provenance"].get("checkpoint_sha256") for x in (ma, mb, ta, tb)}
        if named != {digest}:
            problems.append(f"{name}: metrics/test files name checkpoints {sorted(map(str, named))}, not {digest}")
    assert not problems, "models differ:\n  " + "\n  ".join(problems)
    return names


# ------------------------------------------------------------------------------ order
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM run (``@pytest.mark.slurm``), the longest test (~10 minutes), first: it starts at once beside the
    tiny run another test worker makes (it asks for that run only to compare with it), instead of late, when it
    would keep one worker busy long after the other has run out of tests."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)  # stable: the rest keep their order


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def wikitext2() -> Path:
    if not complete(WIKITEXT2):
        skip_or_fail(missing())
    return WIKITEXT2


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, wikitext2) -> Path:
    """A complete local run of the tiny config (the pristine copy; do not modify it).

    Returned is a folder holding the finished copy, ``pristine``. The run is made once per test run: the first
    test worker that needs it makes it while the others wait for it (a lock), in the folder the workers share.
    A finished copy restored elsewhere plans no job (the jobs' recorded inputs are relative paths), so each
    worker's ``tiny_workdir`` restores it to a folder of its own."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist's workers: each folder lies in the run's own
        shared = shared.parent
    base = shared / "tiny-run"
    with open(shared / "tiny-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (base / "pristine").is_dir():  # not made yet, or a worker's attempt failed: make it here
            shutil.rmtree(base, ignore_errors=True)
            work = copy_repo(base / "work", wikitext2)
            snakemake(work, *TINY, timeout=1800)
            work.rename(base / "pristine")  # only a finished run is there
    return base


def restored(tiny_run: Path, work: Path) -> Path:
    """The finished tiny run (``tiny_run``'s pristine copy, modification times kept) copied to ``work``, replacing
    anything there."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(tiny_run / "pristine", work, symlinks=True)
    return work


@pytest.fixture
def tiny_workdir(tiny_run, tmp_path_factory) -> Path:
    """A pristine copy of the finished tiny run, in one folder of the test worker's own."""
    return restored(tiny_run, tmp_path_factory.getbasetemp() / "tiny-workdir")


class Named(list):
    """A stand-in for Snakemake's named lists (``snakemake.input``, ``.output``, ``.params``): the values in order,
    each also an attribute, ``items()`` by name."""

    def __init__(self, **named):
        super().__init__(v for value in named.values() for v in (value if isinstance(value, list) else [value]))
        self.__dict__.update(named)
        self._named = named

    def items(self):
        return self._named.items()


def digests(paths) -> dict[str, str]:
    """Each file's SHA-256 by its name: what a refused command must leave as it was."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def assert_each_refused(cases: dict, folder: Path, reader) -> None:
    """Each case (``name: (table, message)``) written to ``folder/<name>.csv`` and given to ``reader`` (a list of
    paths): a ValueError naming the file and matching the message (a regular expression)."""
    for name, (bad, message) in cases.items():
        path = folder / f"{name}.csv"
        bad.to_csv(path, index=False)
        with pytest.raises(ValueError, match=rf"{name}.csv.*{message}"):
            reader([path])


def kept_figures(monkeypatch, module):
    """For a fixture (``yield from``): ``module``'s ``save_figure`` replaced, so that the figures it would save are
    kept open to be read; they are closed after the test."""
    from lstmscope.figures import plt

    kept = []
    monkeypatch.setattr(module, "save_figure", lambda fig, *a, **k: kept.append(fig))
    yield kept
    for fig in kept:
        plt.close(fig)


def run_rule_script(name: str, rule: str, log: Path, input: dict, output: dict, params: dict,
                    wildcards: dict | None = None, threads: int = 1, resources: dict | None = None) -> None:
    """Run ``workflow/scripts/<name>.py`` as Snakemake runs it, with a ``snakemake`` object holding these files and
    settings: the script's own wiring (which reader and writer it calls) on real files."""
    import runpy
    from types import SimpleNamespace

    job = SimpleNamespace(rule=rule, log=[str(log)], input=Named(**input), output=Named(**output),
                          params=Named(**params), wildcards=Named(**(wildcards or {})), threads=threads,
                          resources=dict(resources or {}))
    runpy.run_path(str(REPO / "workflow" / "scripts" / f"{name}.py"), init_globals={"snakemake": job})

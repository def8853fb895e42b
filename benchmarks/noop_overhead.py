"""A no-op run: what Snakemake spends on a finished run when nothing changed, against starting Snakemake.

Starting Snakemake (the interpreter, Snakemake and its plugins imported: ``snakemake --version``) costs
about 1–2 s of CPU whatever the workflow (0.9 s on the project's VM); what the workflow adds on top (parsing the rule files, validating
the config, building the DAG, checking every output and its recorded metadata) is its overhead, the time a
user waits after every change before the first job starts. Both are timed in the same folder, interleaved,
best of --repeats (wall and CPU time of the child processes).

Target: an overhead of at most 3 s (wall and CPU) on the default config's finished run.

Usage: python benchmarks/noop_overhead.py [--workdir RUN] [--repeats 3] [-- SNAKEMAKE_ARGS ...]
       (RUN: a folder holding a finished run, default the project itself; arguments after -- are
       passed to both snakemake calls' no-op run, e.g. -- --configfile tests/config/tiny.yaml)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, snakemake_command


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of one run of ``cmd`` and its output; a failed run stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout + r.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=ROOT, help="a folder holding a finished run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("snakemake_args", nargs="*", help="after --: arguments of the no-op run")
    args = ap.parse_args()
    noop, startup = [*snakemake_command(), *args.snakemake_args], [*snakemake_command(), "--version"]
    runs, starts = [], []
    for _ in range(args.repeats):
        wall, cpu, out = timed(noop, args.workdir)
        if "Nothing to be done" not in out:
            sys.exit(f"not a finished run: {args.workdir} plans jobs (run snakemake there first):\n{out[-2000:]}")
        runs.append((wall, cpu))
        starts.append(timed(startup, args.workdir)[:2])
    wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
    start_wall, start_cpu = min(w for w, _ in starts), min(c for _, c in starts)
    print(f"no-op run:           {wall:6.2f} s wall, {cpu:6.2f} s CPU (best of {args.repeats})")
    print(f"snakemake --version: {start_wall:6.2f} s wall, {start_cpu:6.2f} s CPU")
    print(f"overhead:            {wall - start_wall:6.2f} s wall, {cpu - start_cpu:6.2f} s CPU (target: at most 3 s)")
    print(f"no-op / start-up (CPU): {cpu / start_cpu:.2f}x")


if __name__ == "__main__":
    main()

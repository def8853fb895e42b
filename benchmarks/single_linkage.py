"""Single linkage: lstmscope's exact Euclidean-MST clustering vs scikit-learn's.

Both cluster the same 2-D points into --clusters clusters:

* ours:    ``lstmscope.cluster.single_linkage``: Delaunay triangulation (scipy/Qhull), minimum
           spanning tree of its edges, cut of the longest edges; O(n log n) time, O(n) memory;
* sklearn: ``AgglomerativeClustering(linkage="single")`` (an MST over all n^2/2 distances).

The points are a t-SNE-like map: 25 Gaussian blobs of different size and spread, continuous
coordinates (no tied distances, so single linkage is unambiguous), or a real embedding with
--points results/embedding/.../layer2_c.csv (tiled with a small jitter up to each size).
For every size the partitions are compared (adjusted Rand index and canonical labels).
Timings: CPU seconds (process time; wall seconds in brackets), the best of --repeats runs for
ours and of --sklearn-repeats runs for scikit-learn, interleaved.

Targets: same labels; >= 10x faster at 18 000 points; 245 000 points in under a minute.

Usage: python benchmarks/single_linkage.py [--sizes 5000 18000 50000] [--big 245000]
       [--clusters 12] [--repeats 3] [--sklearn-repeats 1] [--points FILE.csv] [--tsv OUT.tsv]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from lstmscope.cluster import canonical_labels, single_linkage  # noqa: E402  (first: pins the CPU kernels)

import numpy as np  # noqa: E402


def mixture(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-60, 60, size=(25, 2))
    which = rng.choice(25, size=n, p=rng.dirichlet(np.ones(25)))
    return centres[which] + rng.normal(size=(n, 2)) * rng.uniform(0.5, 4, size=25)[which, None]


def from_file(path: str, n: int, seed: int = 0) -> np.ndarray:
    import pandas as pd

    xy = pd.read_csv(path, usecols=["x", "y"]).to_numpy(float)
    rng = np.random.default_rng(seed)
    reps = int(np.ceil(n / len(xy)))
    tiled = np.vstack([xy + (rng.normal(size=xy.shape) * 0.05 if r else 0) for r in range(reps)])
    return tiled[:n]


def timed(fn) -> tuple[float, float, object]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 18000, 50000])
    ap.add_argument("--big", type=int, nargs="*", default=[245000], help="sizes timed for ours only")
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sklearn-repeats", type=int, default=1)
    ap.add_argument("--points", help="CSV with x, y columns (a real embedding) instead of the mixture")
    ap.add_argument("--tsv", help="also write the rows to this TSV file")
    args = ap.parse_args()
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    points = (lambda n: from_file(args.points, n)) if args.points else mixture
    rows = []
    print(f"{'points':>8} {'ours s':>16} {'sklearn s':>18} {'speed-up':>9} {'same labels':>12}")
    for n in args.sizes + args.big:
        xy = points(n)
        single_linkage(xy[:1000], n_clusters=2)  # warm-up (imports, Qhull)
        if n in args.sizes and args.sklearn_repeats:  # scikit-learn's too: its first call is slower
            AgglomerativeClustering(n_clusters=2, linkage="single").fit_predict(xy[:1000])
        ours, theirs, labels, ref = [], [], None, None
        for r in range(max(args.repeats, args.sklearn_repeats if n in args.sizes else 0)):
            if r < args.repeats:
                cpu, wall, labels = timed(lambda: single_linkage(xy, n_clusters=args.clusters))
                ours.append((cpu, wall))
            if n in args.sizes and r < args.sklearn_repeats:
                model = AgglomerativeClustering(n_clusters=args.clusters, linkage="single")
                cpu, wall, ref = timed(lambda: model.fit_predict(xy))
                theirs.append((cpu, wall))
        o = min(ours)
        row = {"points": n, "ours_cpu_s": o[0], "ours_wall_s": o[1]}
        if theirs:
            t = min(theirs)
            same = bool(np.array_equal(labels, canonical_labels(ref)))
            ari = adjusted_rand_score(labels, ref)
            row.update(sklearn_cpu_s=t[0], sklearn_wall_s=t[1], speedup_cpu=t[0] / o[0], same_labels=same, ari=ari)
            print(f"{n:>8} {o[0]:>7.3f} ({o[1]:>6.3f}) {t[0]:>8.2f} ({t[1]:>7.2f}) {t[0] / o[0]:>8.1f}x "
                  f"{str(same):>6} ARI {ari:.3f}")
        else:
            print(f"{n:>8} {o[0]:>7.3f} ({o[1]:>6.3f}) {'-':>18} {'-':>9} {'-':>12}")
        rows.append(row)
    if args.tsv:
        import pandas as pd

        Path(args.tsv).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.tsv, sep="\t", index=False, float_format="%.4f")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Cost of nan_policy='marginalize' against a complete-data fit, per EM iteration, side by side in one run.

The issue's target (issue 12, part 1): at n=1e5, d=16, k=8 with 10% of the entries missing completely at random,
one iteration of the 'marginalize' fit should cost under 3x one iteration of the complete-data fit on the same
rows (the data before the holes were punched). Both fits start from the same parameters (weights_init, means_init,
precisions_init: no k-means) and run exactly `--iters` iterations (tol=0). Seconds per iteration = the best of
`--repeat` whole fits over the number of iterations (a fit also validates X and runs one final E-step).
scikit-learn's GaussianMixture on the complete data is timed alongside as a reference; it cannot take the holes.

With 10% MCAR in 16 features only 0.9^16 = 19% of the rows are complete, and the rest spread over thousands of
distinct patterns. klem_nb runs the complete-data kernels on every row with its holes filled, then corrects on the
holes with small solves grouped by the number of missing coordinates (see nbs/07_gaussian.ipynb, (7.22)-(7.23)).
"""
import argparse, gc, math, time, warnings

import numpy as np


def problem(n, d, k, cov_type, rate, seed=0):
    "bench_gmm's blobs and starting parameters, and the same blobs with MCAR holes (never a whole row)."
    import bench_gmm
    X, start = bench_gmm.make_problem(n, d, k, cov_type, seed)
    gone = np.random.default_rng(seed + 1).random(X.shape) < rate
    gone[gone.all(axis=1), 0] = False
    return X, np.where(gone, np.nan, X), start


def per_iteration(make, X, iters, repeat):
    "Best of `repeat` fits of `iters` iterations, over `iters`."
    best = math.inf
    for _ in range(repeat):
        est = make()
        gc.collect()
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            est.fit(X)
        best = min(best, time.perf_counter() - t)
    return best / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--d', type=int, default=16)
    ap.add_argument('--k', type=int, default=8)
    ap.add_argument('--rate', type=float, default=0.10, help='fraction of entries missing (MCAR)')
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--types', default='full,tied,diag,spherical')
    ap.add_argument('--quick', action='store_true', help='n=20000, iters=5, repeat=1: to see that it runs')
    ap.add_argument('--no-sklearn', action='store_true')
    a = ap.parse_args()
    if a.quick: a.n, a.iters, a.repeat = 20_000, 5, 1
    import sklearn.mixture
    from klem_nb.gmm import GaussianMixture
    print(f"n={a.n} d={a.d} k={a.k}, {a.rate:.0%} missing (MCAR), {a.iters} iterations, best of {a.repeat}")
    print(f"{'type':>9} {'complete ms/it':>15} {'marginalize ms/it':>18} {'ratio':>6} {'sklearn ms/it':>14} "
          f"{'complete rows':>13} {'patterns':>8}")
    for t in a.types.split(','):
        X, Xh, start = problem(a.n, a.d, a.k, t, a.rate)
        kw = dict(n_components=a.k, covariance_type=t, tol=0.0, max_iter=a.iters, **start)
        full = per_iteration(lambda: GaussianMixture(**kw), X, a.iters, a.repeat)
        marg = per_iteration(lambda: GaussianMixture(nan_policy='marginalize', **kw), Xh, a.iters, a.repeat)
        sk = math.nan if a.no_sklearn else per_iteration(lambda: sklearn.mixture.GaussianMixture(**kw), X, a.iters, a.repeat)
        holes = np.isnan(Xh)
        print(f"{t:>9} {1e3 * full:>15.1f} {1e3 * marg:>18.1f} {marg / full:>6.2f} {1e3 * sk:>14.1f} "
              f"{(~holes.any(1)).mean():>13.1%} {len(np.unique(holes, axis=0)):>8}")


if __name__ == '__main__':
    main()

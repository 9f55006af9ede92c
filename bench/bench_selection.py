#!/usr/bin/env python
"""GaussianMixtureIC's wall time against a plain loop of scikit-learn fits over the same grid, side by side in one run.

The grid is k = 1..--max-components times the covariance types; both sides fit every candidate with the same
n_init, tol, max_iter and reg_covar (GaussianMixtureIC's defaults unless given), and pick by BIC.

  klem_nb       GaussianMixtureIC(...).fit(X): n_init k-means starts per k, shared by the covariance types (equal
                starts fitted once), the degeneracy guard, `--jobs` processes (also timed with n_jobs=1)
  scikit-learn  for k, type in grid: sklearn.mixture.GaussianMixture(k, covariance_type=type, n_init=..., tol=...,
                max_iter=..., reg_covar=..., random_state=seed).fit(X); BIC of each; the lowest wins (no guard).
                Each fit runs its own n_init k-means starts, so a k-means start is paid four times.

Data: Old Faithful (272 x 2) and a synthetic set of --n rows in 8 dimensions (4 Gaussian blobs with random full
covariances). Prints seconds, the ratio scikit-learn / klem_nb (above 1: klem_nb is faster), each side's choice,
and the machine's load average before and after (the numbers mean little on a busy machine).

  python bench/bench_selection.py                 # Old Faithful, full grid; synthetic 1e5 x 8, k <= 9 (long)
  python bench/bench_selection.py --quick         # Old Faithful k <= 9; synthetic 2e4 x 8, k <= 4, n_init 2
"""
import argparse, math, os, platform, time, warnings

import numpy as np

TYPES = ('full', 'tied', 'diag', 'spherical')


def load():
    "The load averages (1, 5, 15 minutes) and the number of CPUs."
    return os.getloadavg(), os.cpu_count()


def synthetic(n, d=8, k=4, seed=0):
    "n rows in d dimensions from k Gaussian blobs with random full covariances."
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    A = rng.normal(size=(k, d, d)) / math.sqrt(d) + 0.5 * np.eye(d)
    z = rng.integers(k, size=n)
    return centres[z] + np.einsum('nij,nj->ni', A[z], rng.normal(size=(n, d)))


def sklearn_loop(X, ks, types, n_init, tol, max_iter, reg_covar, seed):
    "The plain loop: one scikit-learn fit per candidate; BIC of each; the lowest."
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    best, table = None, {}
    for k in ks:
        for t in types:
            gm = GaussianMixture(k, covariance_type=t, n_init=n_init, tol=tol, max_iter=max_iter, reg_covar=reg_covar,
                                 random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', ConvergenceWarning)
                try: gm.fit(X)
                except ValueError: continue          # a candidate scikit-learn cannot fit (ill-defined covariance)
            bic = gm.bic(X)
            table[k, t] = float(gm.score(X) * len(X))
            if best is None or bic < best[0]: best = (bic, k, t)
    return best, table


def run(name, X, ks, types, n_init, tol, max_iter, reg_covar, jobs, seed):
    from klem_nb.selection import GaussianMixtureIC
    kw = dict(min_components=ks[0], max_components=ks[-1], covariance_types=types, n_init=n_init, tol=tol,
              max_iter=max_iter, reg_covar=reg_covar, random_state=seed)
    times = {}
    t = time.perf_counter(); one = GaussianMixtureIC(n_jobs=1, **kw).fit(X); times['klem_nb n_jobs=1'] = time.perf_counter() - t
    if jobs > 1:
        t = time.perf_counter(); GaussianMixtureIC(n_jobs=jobs, **kw).fit(X)
        times[f'klem_nb n_jobs={jobs}'] = time.perf_counter() - t
    t = time.perf_counter(); best, table = sklearn_loop(X, ks, types, n_init, tol, max_iter, reg_covar, seed)
    times['scikit-learn loop'] = time.perf_counter() - t
    r = one.results_
    gaps = [table[k, t] - ll for k, t, ll in zip(r['n_components'], r['covariance_type'], r['log_likelihood'])
            if (k, t) in table and not math.isnan(ll)]
    print(f"\n{name}: n={X.shape[0]}, d={X.shape[1]}, k={ks[0]}..{ks[-1]}, {len(types)} types "
          f"({len(ks) * len(types)} candidates), n_init={n_init}, "
          f"tol={tol:g}, max_iter={max_iter}")
    sk = times['scikit-learn loop']
    for label, s in times.items():
        ratio = '' if label.startswith('scikit') else f"   ratio scikit-learn / this = {sk / s:6.2f}"
        print(f"  {label:<22} {s:9.2f} s{ratio}")
    print(f"  klem_nb chooses      {one.covariance_type_}, k={one.n_components_} "
          f"(log L {r['log_likelihood'][one.best_index_]:.3f}); rejected: "
          f"{sum(bool(w) for w in r['rejected'])}; runs set aside as degenerate: {sum(r['n_degenerate'])}")
    print(f"  scikit-learn chooses {best[2]}, k={best[1]} (log L {table[best[1], best[2]]:.3f}, no guard)")
    if gaps:
        print(f"  log L, scikit-learn's candidate minus klem_nb's: max {max(gaps):+.3g}, min {min(gaps):+.3g} "
              f""
              f"(the starts differ; positive: scikit-learn's run reached a higher optimum, or klem_nb's best was degenerate "
              f"and set aside)")


def warm_up():
    "One small fit on each side (and one parallel one), so that imports and first calls are not timed."
    from sklearn.mixture import GaussianMixture
    from klem_nb.selection import GaussianMixtureIC
    X = synthetic(500, d=2)
    GaussianMixture(2, n_init=1).fit(X)
    for jobs in (1, 2): GaussianMixtureIC(max_components=2, n_init=1, random_state=0, n_jobs=jobs).fit(X)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small synthetic set (2e4 x 8, k <= 4, n_init 2)')
    p.add_argument('--n', type=int, default=None, help='rows of the synthetic set (default 100000; --quick 20000)')
    p.add_argument('--max-components', type=int, default=None, help='largest k on the synthetic set (default 9; --quick 4)')
    p.add_argument('--n-init', type=int, default=None, help='starts per candidate (default 5; --quick: 2 on the synthetic set)')
    p.add_argument('--tol', type=float, default=1e-6)
    p.add_argument('--max-iter', type=int, default=1000)
    p.add_argument('--reg-covar', type=float, default=1e-6)
    p.add_argument('--jobs', type=int, default=2, help='processes for the parallel klem_nb run (default 2)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--skip-faithful', action='store_true')
    a = p.parse_args()
    n = a.n or (20_000 if a.quick else 100_000)
    kmax = a.max_components or (4 if a.quick else 9)
    n_init = a.n_init or (2 if a.quick else 5)
    warm_up()
    (l1, l5, l15), cpus = load()
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs; load average before "
          f"{l1:.2f} {l5:.2f} {l15:.2f}")
    common = dict(tol=a.tol, max_iter=a.max_iter, reg_covar=a.reg_covar, jobs=a.jobs, seed=a.seed)
    if not a.skip_faithful:
        from klem_nb.datasets import load_faithful
        run('Old Faithful', load_faithful().data, tuple(range(1, 10)), TYPES, a.n_init or 5, **common)
    run('synthetic', synthetic(n), tuple(range(1, kmax + 1)), TYPES, n_init, **common)
    (l1, l5, l15), _ = load()
    print(f"\nload average after {l1:.2f} {l5:.2f} {l15:.2f}")


if __name__ == '__main__':
    main()

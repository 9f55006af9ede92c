#!/usr/bin/env python
"""klem_nb's GaussianHMM fitted on a Dask array chunked by sequence against the in-memory fit, per EM iteration, in
one run: in memory on one thread and on `--n-jobs` threads, on Dask's threaded scheduler, and on a LocalCluster
(two workers of one thread each, processes=False).

Every fit starts from the same hand-set parameters (init_params='') and runs exactly `--iters` iterations (tol=0).
Seconds per iteration = (best of `--repeat` fits with `--iters` iterations - best with 0 iterations) / `--iters`, so
validation and the final E-step, paid once per fit, are left out. The Dask array is built from the numpy one with
chunks of `--chunk` rows that end inside sequences (the fit moves them to sequence boundaries). `ratio` = Dask over
in-memory on `--n-jobs` threads (below 1: Dask is faster); `rel diff` = the largest relative difference of the lower
bounds from the in-memory fit's.

    python bench/bench_hmm_dask.py            # 100 sequences x 10,000 steps, d = 4, k = 4 (diag)
    python bench/bench_hmm_dask.py --quick    # 20 sequences x 1,000 steps
"""
import argparse, os, sys, time, warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def problem(k, d, n_seq, T, seed=0):
    "Data of a sticky k-state chain with Gaussian emissions, and a start."
    rng = np.random.default_rng(seed)
    z = np.repeat(rng.integers(0, k, n_seq * T // 50 + 1), 50)[:n_seq * T]   # runs of 50 steps
    mu = rng.normal(scale=2, size=(k, d))
    X = mu[z] + rng.normal(size=(len(z), d))
    A = np.full((k, k), 0.2 / (k - 1)); np.fill_diagonal(A, 0.8)
    start = dict(startprob_=np.full(k, 1 / k), transmat_=A, means_=mu + rng.normal(scale=0.5, size=(k, d)),
                 covars_=np.tile(np.diag(np.cov(X.T)), (k, 1)))
    return X, np.full(n_seq, T), start


def per_iteration(make, X, lengths, iters, repeat):
    "Best wall time with `iters` iterations minus best with 0, per iteration; and the fit with `iters`."
    def best(m):
        times, est = [], None
        for _ in range(repeat):
            t = time.perf_counter(); est = make(m).fit(X, lengths); times.append(time.perf_counter() - t)
        return min(times), est
    (t_n, est), (t_0, _) = best(iters), best(0)
    return (t_n - t_0) / iters, est


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='20 sequences x 1,000 steps: a smoke run')
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--chunk', type=int, default=None, help='rows per Dask chunk (default: about 8 chunks)')
    p.add_argument('--n-jobs', type=int, default=2, help='threads of the in-memory fit')
    a = p.parse_args()
    import dask, dask.array as da
    from distributed import Client, LocalCluster
    from klem_nb.hmm import GaussianHMM
    n_seq, T = (20, 1_000) if a.quick else (100, 10_000)
    k, d = 4, 4
    X, lengths, start = problem(k, d, n_seq, T)
    chunk = a.chunk or -(-len(X) // 8) + 7                       # boundaries inside sequences
    Xd = da.from_array(X, chunks=(chunk, d))

    def maker(n_jobs=None):
        def make(m):
            est = GaussianHMM(k, covariance_type='diag', init_params='', n_iter=m, tol=0, n_jobs=n_jobs)
            for name, v in start.items(): setattr(est, name, v.copy())
            return est
        return make

    print(f"GaussianHMM diag, {n_seq} sequences x {T:,} steps, d = {d}, k = {k}; Dask chunks of {chunk:,} rows; "
          f"{a.iters} iterations, best of {a.repeat}; cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.2f}")
    rows = []
    s1, ref = per_iteration(maker(1), X, lengths, a.iters, a.repeat)
    rows.append(('in memory, 1 thread', s1, ref))
    sj, est = per_iteration(maker(a.n_jobs), X, lengths, a.iters, a.repeat)
    rows.append((f'in memory, {a.n_jobs} threads', sj, est))
    with dask.config.set(scheduler='threads'):
        s, est = per_iteration(maker(), Xd, lengths, a.iters, a.repeat)
    rows.append(('Dask, threaded scheduler', s, est))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
                Client(cluster):
            Xp = Xd.persist()
            s, est = per_iteration(maker(), Xp, lengths, a.iters, a.repeat)
    rows.append(('Dask, LocalCluster 2x1 (processes=False)', s, est))
    print(f"{'fit':<42} {'s/iter':>9} {'ratio':>7} {'rel diff':>9}")
    for name, s, est in rows:
        diff = np.max(np.abs(est.lower_bounds_ / ref.lower_bounds_ - 1))
        print(f"{name:<42} {s:>9.4f} {s / sj:>7.2f} {diff:>9.1e}")


if __name__ == '__main__':
    main()

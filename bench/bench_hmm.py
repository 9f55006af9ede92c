#!/usr/bin/env python
"""klem_nb's HMMs against hmmlearn 0.3.3 (both its 'log' and 'scaling' implementations), per EM iteration, in one run.

Every estimator starts from the same hand-set parameters (init_params='') and runs exactly `--iters` iterations
(tol=-inf: hmmlearn stops when the gain is below tol, which a finite tol may meet). Seconds per iteration = the best
of `--repeat` whole fits over `--iters` (a fit also validates X once; klem_nb's engine also runs one final E-step
for the ledger, which is counted against it). `klem_nb` is the default E-step (compiled by numba when it is
installed, on `--n-jobs` threads), `numpy` the numpy fallback (klem_nb.hmm.USE_NUMBA = False, same threads).
`ratio` = hmmlearn's faster implementation over klem_nb (above 1: klem_nb is faster), `np ratio` the same for the
numpy path. `rel diff` = relative difference of the final log-likelihoods of klem_nb and hmmlearn 'log'.

    python bench/bench_hmm.py              # the issue's shapes: 10 sequences x 10,000 steps, d = 4, k in (4, 16)
    python bench/bench_hmm.py --quick      # 10 sequences x 1,000 steps
    python bench/bench_hmm.py --n-jobs 1   # klem_nb on one thread, like hmmlearn
"""
import argparse, logging, os, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
logging.getLogger('hmmlearn').setLevel(logging.ERROR)


def chain(rng, k, n):
    A = np.full((k, k), 0.05 / (k - 1)); np.fill_diagonal(A, 0.95)
    u, z = rng.random(n), np.empty(n, dtype=int)
    z[0], cdf = 0, np.cumsum(A, 1)
    for t in range(1, n): z[t] = (cdf[z[t - 1]] > u[t]).argmax()
    return z


def problem(family, k, d, n_seq, T, ct=None, seed=0):
    "Data from a k-state chain and one start both libraries use."
    rng = np.random.default_rng(seed)
    z = chain(rng, k, n_seq * T)
    sp = np.full(k, 1 / k)
    A = np.full((k, k), 0.2 / (k - 1)); np.fill_diagonal(A, 0.8)
    if family == 'gaussian':
        mu = rng.normal(scale=2, size=(k, d))
        X = mu[z] + rng.normal(size=(len(z), d))
        cv = np.cov(X.T)
        covars = {'diag': np.tile(np.diag(cv), (k, 1)), 'full': np.tile(cv, (k, 1, 1)),
                  'spherical': np.full(k, np.diag(cv).mean()), 'tied': cv}[ct]
        start = dict(startprob_=sp, transmat_=A, means_=X[rng.choice(len(X), k, replace=False)], covars_=covars)
    elif family == 'categorical':
        E = rng.dirichlet(np.ones(d), size=k)
        X = np.array([rng.choice(d, p=E[s]) for s in z[:min(len(z), 200_000)]])[:, None]
        X = np.resize(X, (len(z), 1))
        start = dict(startprob_=sp, transmat_=A, emissionprob_=rng.dirichlet(np.ones(d) * 3, size=k))
    else:
        lam = rng.uniform(1, 20, size=(k, d))
        X = rng.poisson(lam[z]).astype(float)
        start = dict(startprob_=sp, transmat_=A, lambdas_=lam * rng.uniform(0.8, 1.2, (k, d)))
    return X, np.full(n_seq, T), start


def timed_fit(make, start, X, lengths, iters, repeat):
    best, est = np.inf, None
    for _ in range(repeat):
        est = make()
        for a, v in start.items(): setattr(est, a, np.array(v, copy=True))
        t = time.perf_counter(); est.fit(X, lengths); best = min(best, time.perf_counter() - t)
    return best / iters, est


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true'); p.add_argument('--iters', type=int, default=5)
    p.add_argument('--repeat', type=int, default=2); p.add_argument('--n-jobs', type=int, default=-1)
    p.add_argument('--no-numpy', action='store_true', help='skip the numpy-path column')
    a = p.parse_args(argv)
    from hmmlearn import hmm
    from klem_nb import hmm as kh
    T = 1_000 if a.quick else 10_000
    cases = [('gaussian', ct, k, 4) for ct in ('diag', 'full') for k in (4, 16)] + \
            [('categorical', None, k, 8) for k in (4, 16)] + [('poisson', None, k, 4) for k in (4, 16)]
    compiled = kh._compiled() is not None
    if compiled: kh.PoissonHMM(2, n_iter=2, random_state=0).fit(np.arange(40.)[:, None] % 5)   # load the compiled loops first
    print(f"10 sequences x {T} steps, {a.iters} iterations, best of {a.repeat}; klem_nb n_jobs={a.n_jobs}, "
          f"{'numba ' + __import__('numba').__version__ if compiled else 'numpy only (numba not installed)'}; "
          f"load average {tuple(round(x, 2) for x in os.getloadavg())}")
    print(f"{'model':<22}{'k':>4}{'hmml log':>11}{'hmml scal':>11}{'numpy':>9}{'klem_nb':>10}{'np ratio':>9}{'ratio':>8}{'rel diff':>10}"
          "   (ms / iteration)")
    for fam, ct, k, d in cases:
        X, lengths, start = problem(fam, k, d, 10, T, ct)
        kw = dict(n_components=k, init_params='', n_iter=a.iters, tol=-np.inf)
        if fam == 'gaussian': kw['covariance_type'] = ct
        Peer = {'gaussian': hmm.GaussianHMM, 'categorical': hmm.CategoricalHMM, 'poisson': hmm.PoissonHMM}[fam]
        Ours = {'gaussian': kh.GaussianHMM, 'categorical': kh.CategoricalHMM, 'poisson': kh.PoissonHMM}[fam]
        t_log, e_log = timed_fit(lambda: Peer(**kw, implementation='log'), start, X, lengths, a.iters, a.repeat)
        t_sc, _ = timed_fit(lambda: Peer(**kw, implementation='scaling'), start, X, lengths, a.iters, a.repeat)
        t_np = np.nan
        if not a.no_numpy:
            kh.USE_NUMBA = False
            try: t_np, _ = timed_fit(lambda: Ours(**kw, n_jobs=a.n_jobs), start, X, lengths, a.iters, a.repeat)
            finally: kh.USE_NUMBA = True
        t_k, e_k = timed_fit(lambda: Ours(**kw, n_jobs=a.n_jobs), start, X, lengths, a.iters, a.repeat)
        rel = abs(e_k.lower_bounds_[-1] - e_log.monitor_.history[-1]) / abs(e_log.monitor_.history[-1])
        name = fam + (f' {ct}' if ct else '')
        best = min(t_log, t_sc)
        print(f"{name:<22}{k:>4}{t_log*1e3:>11.1f}{t_sc*1e3:>11.1f}{t_np*1e3:>9.1f}{t_k*1e3:>10.1f}{best/t_np:>9.2f}{best/t_k:>8.2f}"
              f"{rel:>10.1e}", flush=True)


if __name__ == '__main__':
    main()

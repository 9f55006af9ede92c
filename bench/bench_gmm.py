#!/usr/bin/env python
"""klem_nb against scikit-learn, per EM iteration, side by side in one run.

For each shape (n, d, k) and covariance type both estimators start from the same parameters (weights_init,
means_init, precisions_init, so no k-means) and run exactly `--iters` iterations (tol=0, which neither can meet).
Seconds per iteration = the best of `--repeat` whole fits divided by the number of iterations (a fit also
validates X once and runs one final E-step; both libraries pay for those).

FLOPs of one full-covariance iteration, counted as a plain dense implementation does them:
  E-step  (x - mu_j) @ L_j for each component j      2 n d^2 k
  M-step  sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T       2 n d^2 k
giving 4 n k d^2 (terms of order n k d are left out). klem_nb's GFLOP/s is that count over its time per
iteration, and its fraction of the machine's GEMM figure (numpy float64 matmul of two 4000 x 4000 matrices).

The roofline column is a lower bound on one iteration from three machine figures measured at start-up (GEMM
speed, streaming read speed, numpy's exp rate): the dense products of the iteration at GEMM speed (E- and M-step;
full 4nkd², diag 8nkd, spherical 4nk(d+1), tied 4nd² + 2nk(d+1)), plus one read of X and one write and read of
the n x k table at memory speed, plus n·k exps. `x roof` is klem_nb's time over that bound.

`--parallel-flops N` sets klem_nb.gaussian.PARALLEL_FLOPS_PER_ROW before the fits (the flops per row from which the
kernels spread chunks over every core; 0: always), to measure the thread policy on an idle machine.
`--keep-features-bytes N` sets klem_nb.gmm.KEEP_FEATURES_BYTES (the largest feature table [x - c, (x - c)^2] a diag or
spherical fit keeps for all its iterations; 0: formed chunk by chunk every E-step), to measure that policy.

`--float32` prints only a float32 table instead: klem_nb on float32 data against klem_nb on the same values as
float64 and scikit-learn on float32, per iteration, at FLOAT32_SHAPES for 'full' and 'diag' (issue 13, item 4).

Peak memory is measured with tracemalloc (numpy reports its array allocations to it) in a separate fit.

The Bernoulli and Poisson mixtures have no scikit-learn counterpart; they are timed against a plain vectorised
numpy EM written below (`plain_mean_mixture_em`: the log-probabilities by two matrix products, scipy's logsumexp, exp,
and the weighted averages), started from klem_nb's own initial parameters (a fit with max_iter=0 and the same
random_state) and run for the same number of iterations.
"""
import argparse, gc, json, math, os, platform, sys, time, tracemalloc, warnings
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_info

SHAPES = [(10_000, 2, 3), (100_000, 2, 8), (100_000, 16, 8), (100_000, 64, 16), (1_000_000, 8, 8)]
FLOAT32_SHAPES = [(1_000_000, 8, 8), (100_000, 64, 16)]   # issue 13: float32 >= 1.7x the float64 path here
MEAN_SHAPES = {'bernoulli': [(200_000, 64, 10)], 'poisson': [(200_000, 16, 8)]}


def gemm_gflops(n=4000, repeat=3):
    a, b = np.random.default_rng(0).random((2, n, n))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def memory_gbs(n=2**25, repeat=3):
    "Streaming read speed: one pass summing a 256 MB float64 array (bytes per second, in GB/s)."
    a = np.ones(n)
    a.sum()
    return 8 * n / min(_timed(a.sum) for _ in range(repeat)) / 1e9


def exp_per_second(n=2**23, repeat=3):
    "numpy's exp on float64, elements per second (the E-step's one unavoidable transcendental per table entry)."
    a, out = np.linspace(-30, 0, n), np.empty(n)
    return n / min(_timed(lambda: np.exp(a, out=out)) for _ in range(repeat))


def iteration_work(n, d, k, cov_type):
    "FLOPs of the dense products one iteration cannot avoid, bytes it must stream, and exps it must take."
    e_flops = {'full': 2 * n * k * d * d, 'tied': 2 * n * d * d + 2 * n * k * (d + 1),
               'diag': 2 * n * k * 2 * d, 'spherical': 2 * n * k * (d + 1)}[cov_type]
    m_flops = {'full': 2 * n * k * d * d, 'tied': 2 * n * d * d, 'diag': 2 * n * k * 2 * d,
               'spherical': 2 * n * k * (d + 1)}[cov_type]
    return e_flops + m_flops, 8 * n * d + 16 * n * k, n * k    # X read once; the n x k table written and read once


def roofline_s(n, d, k, cov_type, gemm, gbs, exps):
    "Lower bound of one iteration: its products at GEMM speed, plus (as they cannot overlap in numpy) its passes and exps."
    flops, nbytes, n_exp = iteration_work(n, d, k, cov_type)
    return flops / (gemm * 1e9) + nbytes / (gbs * 1e9) + n_exp / exps


def _timed(f):
    gc.collect()
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def make_problem(n, d, k, cov_type, seed=0):
    "Blobs with random covariances, and one set of initial parameters both libraries start from."
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    z = rng.integers(k, size=n)
    A = rng.normal(size=(k, d, d)) / math.sqrt(d) + np.eye(d)
    X = centres[z] + np.einsum('nij,nj->ni', A[z], rng.normal(size=(n, d)))
    weights = np.full(k, 1 / k)
    means = X[rng.choice(n, size=k, replace=False)]
    cov = np.cov(X, rowvar=False).reshape(d, d)
    prec = np.linalg.inv(cov)
    precisions = {'full': np.repeat(prec[None], k, axis=0), 'tied': prec,
                  'diag': np.repeat(1 / np.diag(cov)[None], k, axis=0),
                  'spherical': np.full(k, 1 / np.diag(cov).mean())}[cov_type]
    return X, dict(weights_init=weights, means_init=means, precisions_init=precisions)


def estimator(lib, k, cov_type, iters, init):
    if lib == 'klem_nb': from klem_nb.gmm import GaussianMixture
    else: from sklearn.mixture import GaussianMixture
    return GaussianMixture(k, covariance_type=cov_type, tol=0.0, max_iter=iters, **init)


def scipy_blas_one_thread():
    "A context limiting only scipy's own OpenBLAS copy to one thread (scikit-learn's best setup here)."
    ctl = ThreadpoolController()
    scipy_libs = [c for c in ctl.select(user_api='blas').lib_controllers
                  if 'scipy' in c.filepath and 'numpy' not in c.filepath]
    class _Limit:
        def __enter__(self):
            self.old = [c.num_threads for c in scipy_libs]
            for c in scipy_libs: c.set_num_threads(1)
        def __exit__(self, *a):
            for c, o in zip(scipy_libs, self.old): c.set_num_threads(o)
    return _Limit()


def time_fit(lib, X, k, cov_type, iters, init, repeat, limit=None):
    times, est = [], None
    for _ in range(repeat):
        est = estimator(lib, k, cov_type, iters, init)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if limit:
                with limit: times.append(_timed(lambda: est.fit(X)))
            else: times.append(_timed(lambda: est.fit(X)))
    assert est.n_iter_ == iters, (lib, est.n_iter_)
    return min(times) / iters, est


def peak_mb(lib, X, k, cov_type, iters, init):
    est = estimator(lib, k, cov_type, iters, init)
    gc.collect()
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        est.fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def make_mean_problem(family, n, d, k, seed=0):
    "Binary rows (Bernoulli) or counts (Poisson) from a k-component mixture with well separated means."
    rng = np.random.default_rng(seed)
    z = rng.integers(k, size=n)
    if family == 'bernoulli':
        return (rng.random((n, d)) < rng.uniform(0.1, 0.9, size=(k, d))[z]).astype(float)
    return rng.poisson(rng.uniform(0.5, 8.0, size=(k, d))[z]).astype(float)


def plain_mean_mixture_em(family, X, weights, means, iters):
    "EM for a Bernoulli or Poisson mixture as one would write it with numpy and scipy; returns the lower bounds."
    from scipy.special import gammaln, logsumexp
    eps10 = 10 * np.finfo(float).eps
    const = -gammaln(X + 1).sum(1, keepdims=True) if family == 'poisson' else 0.0
    bounds = []
    for _ in range(iters):
        if family == 'bernoulli':
            log_prob = X @ np.log(means).T + (1 - X) @ np.log1p(-means).T
        else:
            log_prob = X @ np.log(means).T - means.sum(1) + const
        lj = log_prob + np.log(weights)
        log_norm = logsumexp(lj, axis=1)
        bounds.append(log_norm.mean())
        resp = np.exp(lj - log_norm[:, None])
        nk = resp.sum(0) + eps10
        means = resp.T @ X / nk[:, None]
        if family == 'bernoulli': means = np.minimum(means, 1.0)
        weights = nk / nk.sum()
    return np.array(bounds)


def time_mean_mixture(family, n, d, k, iters, repeat):
    "klem_nb's mixture against the plain numpy EM from the same start: seconds per iteration and lower bounds."
    from klem_nb.discrete import BernoulliMixture, PoissonMixture
    cls = BernoulliMixture if family == 'bernoulli' else PoissonMixture
    X = make_mean_problem(family, n, d, k)
    kw = dict(n_components=k, init_params='random_from_data', random_state=0, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        start = cls(max_iter=0, **kw).fit(X)
    t_plain, bounds = math.inf, None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        bounds = plain_mean_mixture_em(family, X, start.weights_.copy(), start.means_.copy(), iters)
        t_plain = min(t_plain, time.perf_counter() - t)
    t_klem, est = time_fit_estimator(lambda: cls(max_iter=iters, **kw), X, repeat)
    assert est.n_iter_ == iters
    return dict(family=family, n=n, d=d, k=k, plain_s_per_iter=t_plain / iters, klem_s_per_iter=t_klem / iters,
                ratio=t_plain / t_klem, lower_bound_rel_diff=abs(est.lower_bound_ - bounds[-1]) / abs(bounds[-1]))


def time_fit_estimator(make, X, repeat):
    best, est = math.inf, None
    for _ in range(repeat):
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            best = min(best, _timed(lambda: est.fit(X)))
    return best, est


def float32_table(a):
    "klem_nb on float32 data against klem_nb on the same data as float64, and scikit-learn on float32, same start."
    types = [t for t in a.types if t in ('full', 'diag')] or a.types
    head = (f"{'n':>9} {'d':>3} {'k':>3} {'type':>9} | {'klem64 s/it':>11} {'klem32 s/it':>11} {'64/32':>6} | "
            f"{'sk32 s/it':>9} {'sk32/k32':>8} | {'lb rel 32v64':>12}")
    print(head)
    print('-' * len(head))
    rows = []
    for n, d, k in FLOAT32_SHAPES:
        n = n // 10 if a.quick else n
        for cov_type in types:
            X, init = make_problem(n, d, k, cov_type)
            X32 = X.astype(np.float32)                  # float64 runs on the float32 values: only the arithmetic differs
            X64 = X32.astype(np.float64)
            init32 = {key: v.astype(np.float32) for key, v in init.items()}
            t64, k64 = time_fit('klem_nb', X64, k, cov_type, a.iters, init32, a.repeat)
            t32, k32 = time_fit('klem_nb', X32, k, cov_type, a.iters, init32, a.repeat)
            ts, _ = time_fit('sklearn', X32, k, cov_type, a.iters, init32, a.repeat)
            assert k32.means_.dtype == np.float32
            row = dict(n=n, d=d, k=k, covariance_type=cov_type, klem64_s_per_iter=t64, klem32_s_per_iter=t32,
                       ratio_64_over_32=t64 / t32, sklearn32_s_per_iter=ts, ratio_sklearn32_over_klem32=ts / t32,
                       lower_bound_rel_diff=abs(k32.lower_bound_ - k64.lower_bound_) / abs(k64.lower_bound_))
            rows.append(row)
            print(f"{n:>9} {d:>3} {k:>3} {cov_type:>9} | {t64:11.4f} {t32:11.4f} {row['ratio_64_over_32']:6.2f} | "
                  f"{ts:9.4f} {row['ratio_sklearn32_over_klem32']:8.2f} | {row['lower_bound_rel_diff']:12.2e}", flush=True)
    print("64/32 = klem_nb float64 / klem_nb float32 seconds per iteration (same float32 values, same start); "
          "sk32/k32 = scikit-learn float32 / klem_nb float32; lb rel 32v64 = |L32 - L64| / |L64| after the iterations")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--repeat', type=int, default=2)
    ap.add_argument('--types', nargs='+', default=['full', 'diag', 'tied', 'spherical'])
    ap.add_argument('--quick', action='store_true', help='only the two smallest shapes, for a smoke test')
    ap.add_argument('--shapes', nargs='+', default=None, metavar='N,D,K',
                    help='only these shapes (e.g. 100000,64,16); the JSON then goes to results/subset.json')
    ap.add_argument('--no-mean-mixtures', action='store_true', help='skip the Bernoulli and Poisson mixtures')
    ap.add_argument('--only-mean-mixtures', action='store_true', help='only the Bernoulli and Poisson mixtures')
    ap.add_argument('--json', default=str(Path(__file__).parent/'results'/'latest.json'))
    ap.add_argument('--float32', action='store_true',
                    help='only the float32 table: klem_nb float32 vs float64 (and scikit-learn float32), full and diag')
    ap.add_argument('--parallel-flops', type=int, default=None,
                    help="set klem_nb.gaussian.PARALLEL_FLOPS_PER_ROW (0: the kernels use every core for every shape)")
    ap.add_argument('--keep-features-bytes', type=int, default=None,
                    help="set klem_nb.gmm.KEEP_FEATURES_BYTES (0: diag and spherical fits form their features every E-step)")
    a = ap.parse_args(argv)
    if a.keep_features_bytes is not None:
        import klem_nb.gmm
        klem_nb.gmm.KEEP_FEATURES_BYTES = a.keep_features_bytes
    if a.parallel_flops is not None:
        import klem_nb.gaussian
        klem_nb.gaussian.PARALLEL_FLOPS_PER_ROW = a.parallel_flops
    print(f'load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}')
    if a.float32:
        print(f'{a.iters} iterations per fit, best of {a.repeat}')
        rows = float32_table(a)
        out = Path(a.json).with_name('float32.json')
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(iters=a.iters, repeat=a.repeat, rows=rows), indent=1))
        print(f'wrote {out}; load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}')
        return
    shapes = [] if a.only_mean_mixtures else SHAPES[:2] if a.quick else SHAPES
    if a.shapes: shapes = [tuple(int(float(v)) for v in s.split(',')) for s in a.shapes]
    gemm, gbs, exps = gemm_gflops(), memory_gbs(), exp_per_second()
    rows, summary = [], {}
    print(f'numpy float64 GEMM: {gemm:.1f} GFLOP/s; memory read: {gbs:.1f} GB/s; exp: {exps / 1e6:.0f} M/s; '
          f'{a.iters} iterations per fit, best of {a.repeat}')
    if shapes: head = (f"{'n':>9} {'d':>3} {'k':>3} {'type':>9} | {'sklearn s/it':>12} {'klem s/it':>10} {'ratio':>6} "
            f"{'ratio*':>6} | {'roof s/it':>9} {'x roof':>6} | {'GFLOP/s':>7} {'%GEMM':>6} | {'MB sk':>7} {'MB klem':>7} "
            f"| {'lb rel diff':>11}")
    if shapes: print(head)
    if shapes: print('-' * len(head))
    for n, d, k in shapes:
        for cov_type in a.types:
            X, init = make_problem(n, d, k, cov_type)
            t_sk, sk = time_fit('sklearn', X, k, cov_type, a.iters, init, a.repeat)
            t_sk1, _ = time_fit('sklearn', X, k, cov_type, a.iters, init, a.repeat, limit=scipy_blas_one_thread())
            t_kl, kl = time_fit('klem_nb', X, k, cov_type, a.iters, init, a.repeat)
            flops = 4 * n * k * d * d if cov_type == 'full' else None
            roof = roofline_s(n, d, k, cov_type, gemm, gbs, exps)
            row = dict(n=n, d=d, k=k, covariance_type=cov_type, sklearn_s_per_iter=t_sk, roofline_s_per_iter=roof,
                       klem_over_roofline=t_kl / roof,
                       sklearn_scipy_blas_1thread_s_per_iter=t_sk1, klem_s_per_iter=t_kl,
                       ratio=t_sk / t_kl, ratio_vs_best_sklearn=min(t_sk, t_sk1) / t_kl,
                       klem_gflops=flops / t_kl / 1e9 if flops else None,
                       klem_fraction_of_gemm=flops / t_kl / 1e9 / gemm if flops else None,
                       sklearn_peak_mb=peak_mb('sklearn', X, k, cov_type, a.iters, init),
                       klem_peak_mb=peak_mb('klem_nb', X, k, cov_type, a.iters, init),
                       lower_bound_rel_diff=abs(kl.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_))
            rows.append(row)
            gf = f"{row['klem_gflops']:7.1f} {100 * row['klem_fraction_of_gemm']:5.1f}%" if flops else f"{'':7} {'':6}"
            print(f"{n:>9} {d:>3} {k:>3} {cov_type:>9} | {t_sk:12.4f} {t_kl:10.4f} {row['ratio']:6.2f} "
                  f"{row['ratio_vs_best_sklearn']:6.2f} | {roof:9.4f} {t_kl / roof:6.1f} | {gf} | {row['sklearn_peak_mb']:7.1f} "
                  f"{row['klem_peak_mb']:7.1f} | {row['lower_bound_rel_diff']:11.2e}", flush=True)
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    fd = [r for r in rows if r['covariance_type'] in ('full', 'diag')] or rows
    if rows: summary = dict(gemm_gflops=gemm, memory_gbs=gbs, exp_per_s=exps,
                   max_klem_over_roofline=max(r['klem_over_roofline'] for r in rows), geomean_ratio_full_diag=geo([r['ratio'] for r in fd]),
                   min_ratio_full_diag=min(r['ratio'] for r in fd),
                   geomean_ratio_vs_best_sklearn_full_diag=geo([r['ratio_vs_best_sklearn'] for r in fd]),
                   geomean_ratio_all=geo([r['ratio'] for r in rows]))
    if rows: print("ratio = sklearn / klem_nb seconds per iteration; ratio* = against sklearn with scipy's BLAS at one thread; "
          "roof = the iteration's lower bound from the machine figures above, x roof = klem_nb's time over it")
    mean_rows = []
    if not a.no_mean_mixtures:
        head = (f"{'family':>9} {'n':>9} {'d':>3} {'k':>3} | {'plain s/it':>10} {'klem s/it':>10} {'ratio':>6} | "
                f"{'lb rel diff':>11}")
        print()
        print(head)
        print('-' * len(head))
        for family, shapes_f in MEAN_SHAPES.items():
            for n, d, k in (shapes_f[:1] if a.quick else shapes_f):
                n = n // 10 if a.quick else n
                r = time_mean_mixture(family, n, d, k, a.iters, a.repeat)
                mean_rows.append(r)
                print(f"{family:>9} {n:>9} {d:>3} {k:>3} | {r['plain_s_per_iter']:10.4f} {r['klem_s_per_iter']:10.4f} "
                      f"{r['ratio']:6.2f} | {r['lower_bound_rel_diff']:11.2e}", flush=True)
        print("ratio = plain numpy EM / klem_nb seconds per iteration, same start, same iterations")
        summary['min_ratio_mean_mixtures'] = min(r['ratio'] for r in mean_rows)
    print(json.dumps(summary, indent=1))
    out = Path(a.json)
    if a.only_mean_mixtures and a.json == ap.get_default('json'): out = out.with_name('mean_mixtures.json')   # keep latest.json whole
    if a.shapes and a.json == ap.get_default('json'): out = out.with_name('subset.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=dict(python=sys.version.split()[0], platform=platform.platform(),
                                                blas=[{k: i.get(k) for k in ('filepath', 'version', 'architecture',
                                                       'num_threads')} for i in threadpool_info()]),
                                   iters=a.iters, repeat=a.repeat, summary=summary, rows=rows,
                                   mean_mixture_rows=mean_rows), indent=1))
    print(f'wrote {out}; load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}')


if __name__ == '__main__': main()

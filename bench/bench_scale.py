#!/usr/bin/env python
"""klem_nb's GaussianMixture fitted four ways, per EM iteration, side by side in one run: in memory (numpy), on a
Dask array under a LocalCluster with worker threads (processes=False) and with worker processes (processes=True),
and from a memory-mapped .npy file (np.load(mmap_mode='r')).

Every fit starts from the same parameters (weights_init, means_init, precisions_init: no k-means) and runs exactly
`--iters` iterations (tol=0). Seconds per iteration = (best fit with `--iters` iterations - best fit with 0
iterations) / `--iters`, so validation and the final E-step, paid once per fit, are left out. Peak memory is the
client's peak traced memory (tracemalloc; numpy reports its allocations to it) during one fit, with X allocated
before and not counted; for processes=True the workers' resident memory after the fit is printed too.

    python bench/bench_scale.py            # 1e6 x 8 x 8 and 4e6 x 16 x 8 (several minutes; needs ~3 GB of disk in --dir)
    python bench/bench_scale.py --quick    # 1e5 x 8 x 8, a smoke run
"""
import argparse, gc, os, tempfile, time, tracemalloc, warnings

import numpy as np

SHAPES = [(1_000_000, 8, 8), (4_000_000, 16, 8)]


def data(n, d, k, path, seed=0):
    "k Gaussian clumps written to a .npy file in blocks (never two copies in memory); returns the start parameters."
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    X = np.lib.format.open_memmap(path, mode='w+', dtype=np.float64, shape=(n, d))
    for a in range(0, n, 250_000):
        b = min(a + 250_000, n)
        X[a:b] = centres[rng.integers(0, k, b - a)] + rng.standard_normal((b - a, d))
    X.flush()
    del X
    start = dict(weights_init=np.full(k, 1 / k), means_init=centres + rng.normal(0, 0.5, (k, d)),
                 precisions_init=np.broadcast_to(np.eye(d), (k, d, d)).copy())
    return start


def fit_seconds(make, X, iters, repeat):
    "Best wall time of a fit with `iters` iterations and of one with 0; their difference per iteration; and the peak."
    def once(m):
        gc.collect()
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            est = make(m).fit(X)
        return time.perf_counter() - t, est
    full = min(once(iters)[0] for _ in range(repeat))
    zero = min(once(0)[0] for _ in range(repeat))
    tracemalloc.start()
    _, est = once(iters)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (full - zero) / iters, peak, est


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='one small shape (1e5 x 8 x 8): a smoke run')
    p.add_argument('--shape', action='append', default=None, metavar='N,D,K', help='a shape to run instead of the defaults')
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--chunk', type=int, default=250_000, help='rows per Dask chunk')
    p.add_argument('--dir', default=None, help='where to write the .npy files (default: a temporary directory)')
    args = p.parse_args()
    import dask.array as da
    from distributed import Client, LocalCluster
    from klem_nb.gmm import GaussianMixture
    shapes = [(100_000, 8, 8)] if args.quick else SHAPES
    if args.shape: shapes = [tuple(int(float(v)) for v in s.split(',')) for s in args.shape]
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()}; {args.iters} iterations, best of {args.repeat}")
    head = f"{'n x d x k':>18} {'way':>22} {'s/iter':>9} {'x in-mem':>9} {'peak MB':>9} {'lb rel diff':>12}"
    print(head)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n, d, k in shapes:
            path = os.path.join(tmp, f'X_{n}_{d}.npy')
            start = data(n, d, k, path)
            def make(m): return GaussianMixture(k, tol=0, max_iter=m, **start)
            rows = []
            X = np.load(path)                                     # in memory
            t_mem, peak, ref = fit_seconds(make, X, args.iters, args.repeat)
            rows.append(('in memory (numpy)', t_mem, peak, ref))
            for processes in (False, True):
                with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None) as cl, \
                        Client(cl) as client:
                    Xd = da.from_array(np.load(path, mmap_mode='r'), chunks=(args.chunk, d)).persist()   # on the workers
                    t, peak, est = fit_seconds(make, Xd, args.iters, args.repeat)
                    label = f"Dask, processes={processes}"
                    if processes:
                        rss = sum(client.run(lambda: __import__('psutil').Process().memory_info().rss).values())
                        label += f" (workers {rss / 2**20:.0f} MB)"
                    rows.append((label, t, peak, est))
                    del Xd
            Xm = np.load(path, mmap_mode='r')
            t, peak, est = fit_seconds(make, Xm, args.iters, args.repeat)
            rows.append(('memmap', t, peak, est))
            del X, Xm
            for label, t, peak, est in rows:
                diff = abs(est.lower_bound_ - ref.lower_bound_) / abs(ref.lower_bound_)
                print(f"{f'{n:.0e} x {d} x {k}':>18} {label:>22} {t:9.4f} {t / t_mem:9.2f} {peak / 2**20:9.1f} {diff:12.1e}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == '__main__':
    main()

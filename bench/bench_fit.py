#!/usr/bin/env python
"""Whole fits as a user runs them: klem_nb against scikit-learn, interleaved, best of `--repeat`.

`GaussianMixture(k, covariance_type=t).fit(X)` with every default (k-means start, tol=1e-3, n_init=1), and again
with n_init=5, for the shapes of bench_gmm.py plus Old Faithful (bundled) and scikit-learn's digits (bundled with
scikit-learn). The two libraries alternate fit by fit, so a change in the machine's load hits both.
Both start from the same k-means labels (klem_nb calls scikit-learn's KMeans with the same random_state), which
the script checks by comparing the fitted lower bounds.

For klem_nb it also prints where a fit's time goes, from one profiled fit: validation (`validate_data`), the start
(`_initialize_parameters`: k-means and the first M-step), the EM iterations (`_em_loop`, the engine's loop), and the rest.
"""
import argparse, cProfile, gc, json, math, pstats, time, warnings
from pathlib import Path

import numpy as np

SHAPES = [(10_000, 2, 3), (100_000, 2, 8), (100_000, 16, 8), (100_000, 64, 16), (1_000_000, 8, 8)]


def data(name):
    "(X, k) for a named data set or an (n, d, k) shape of bench_gmm.py's blobs."
    if name == 'faithful':
        from klem_nb.datasets import load_faithful
        return load_faithful().data, 2
    if name == 'digits':
        from sklearn.datasets import load_digits
        return load_digits().data, 10
    n, d, k = name
    import bench_gmm
    return bench_gmm.make_problem(n, d, k, 'full')[0], k


def fit_seconds(lib, X, k, cov_type, n_init):
    if lib == 'klem_nb': from klem_nb.gmm import GaussianMixture
    else: from sklearn.mixture import GaussianMixture
    est = GaussianMixture(k, covariance_type=cov_type, n_init=n_init, random_state=0)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = time.perf_counter()
        est.fit(X)
        return time.perf_counter() - t, est


PARTS = {'validation': 'validate_data', 'start': '_initialize_parameters', 'EM iterations': '_em_loop'}

def breakdown(X, k, cov_type, n_init):
    "Seconds of one klem_nb fit spent in each part, from cumulative profile times."
    from klem_nb.gmm import GaussianMixture
    est = GaussianMixture(k, covariance_type=cov_type, n_init=n_init, random_state=0)
    prof = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = time.perf_counter()
        prof.runcall(est.fit, X)
        total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    def called_by_klem(name):                           # cumulative seconds of `name` when klem_nb calls it directly
        return sum(t[3] for (f, l, fn), v in stats.items() if fn == name
                   for (cf, cl, cfn), t in v[4].items() if 'klem_nb' in cf)
    out = {part: called_by_klem(name) for part, name in PARTS.items()}
    out['other'] = total - sum(out.values())
    return {p: s / total for p, s in out.items()}, total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--types', nargs='+', default=['full', 'diag'])
    ap.add_argument('--n-init', nargs='+', type=int, default=[1, 5])
    ap.add_argument('--quick', action='store_true', help='Old Faithful and the smallest shape only')
    ap.add_argument('--json', default=str(Path(__file__).parent/'results'/'fit_latest.json'))
    a = ap.parse_args(argv)
    names = ['faithful', SHAPES[0]] if a.quick else ['faithful', 'digits'] + SHAPES
    head = (f"{'data':>18} {'type':>5} {'n_init':>6} | {'sklearn s':>9} {'klem s':>8} {'ratio':>6} | "
            f"{'valid':>5} {'start':>5} {'EM':>5} {'other':>5} | {'lb diff':>8}")
    print(head)
    print('-' * len(head))
    rows = []
    for name in names:
        X, k = data(name)
        label = name if isinstance(name, str) else 'x'.join(map(str, name))
        for cov_type in a.types:
            for n_init in a.n_init:
                t_sk = t_kl = math.inf
                for _ in range(a.repeat):                      # interleaved: sklearn, klem_nb, sklearn, ...
                    s, sk = fit_seconds('sklearn', X, k, cov_type, n_init)
                    t_sk = min(t_sk, s)
                    s, kl = fit_seconds('klem_nb', X, k, cov_type, n_init)
                    t_kl = min(t_kl, s)
                shares, _ = breakdown(X, k, cov_type, n_init)
                lb = abs(kl.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_)
                rows.append(dict(data=label, covariance_type=cov_type, n_init=n_init, sklearn_s=t_sk, klem_s=t_kl,
                                 ratio=t_sk / t_kl, klem_shares=shares, lower_bound_rel_diff=lb))
                print(f"{label:>18} {cov_type:>5} {n_init:>6} | {t_sk:9.3f} {t_kl:8.3f} {t_sk / t_kl:6.2f} | "
                      + ' '.join(f"{100 * shares[p]:4.0f}%" for p in ('validation', 'start', 'EM iterations', 'other'))
                      + f" | {lb:8.1e}", flush=True)
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    summary = {f'geomean_ratio_n_init_{m}': geo([r['ratio'] for r in rows if r['n_init'] == m]) for m in a.n_init}
    print("ratio = sklearn / klem_nb seconds per whole fit (best of each); shares: where klem_nb's fit spends its time")
    print(json.dumps(summary, indent=1))
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(repeat=a.repeat, summary=summary, rows=rows), indent=1))
    print(f'wrote {out}')


if __name__ == '__main__':
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    main()

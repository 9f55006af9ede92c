"""EM at scale (nbs/13_scale.ipynb): Dask arrays under three schedulers, memmaps and other out-of-core arrays, online
EM (`partial_fit`) and incremental EM, all against the in-memory fit."""
import pickle
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

da = pytest.importorskip('dask.array')
import dask  # noqa: E402

from klem_nb.discrete import BernoulliMixture, PoissonMixture  # noqa: E402
from klem_nb.em import FreeEnergyIncreaseError, em, incremental_em, learning_rate  # noqa: E402
from klem_nb.base import MixtureEMModel  # noqa: E402
from klem_nb.gmm import GaussianMixture  # noqa: E402

RTOL = 1e-10
rng0 = np.random.default_rng(0)


def gaussian_data(n=3000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    m = n // 3
    return np.r_[rng.normal(0, 1, (m, d)), rng.normal(3, 0.7, (m, d)), rng.normal((-2, 4, 1)[:d] + (0,) * (d - 3), 1.2, (n - 2 * m, d))]


def counts_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    return rng.poisson(np.where(z[:, None], [1.0, 6.0, 2.0, 0.5], [5.0, 1.5, 2.0, 4.0])).astype(float)


def binary_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.6
    return (rng.random((n, 6)) < np.where(z[:, None], 0.8, 0.2) * np.linspace(0.5, 1, 6)).astype(float)


CASES = {**{f'gmm-{ct}': (lambda ct=ct: GaussianMixture(3, covariance_type=ct, init_params='random_from_data',
                                                          random_state=1, tol=1e-9, max_iter=60), gaussian_data)
            for ct in ('full', 'tied', 'diag', 'spherical')},
         'poisson': (lambda: PoissonMixture(2, init_params='random_from_data', random_state=2, tol=1e-9, max_iter=200),
                     counts_data),
         'bernoulli': (lambda: BernoulliMixture(2, init_params='random_from_data', random_state=3, tol=1e-9,
                                                max_iter=200), binary_data)}


def fit_quietly(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return est.fit(X, **kw)


def assert_same_fit(a, b, rtol=RTOL):
    assert a.n_iter_ == b.n_iter_
    for name in ('lower_bounds_', 'weights_', 'means_', 'covariances_'):
        if hasattr(a, name): np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol, atol=0, err_msg=name)
    np.testing.assert_allclose(b.lower_bound_, a.lower_bound_, rtol=rtol)
    for field in ('log_likelihood', 'free_energy'):
        np.testing.assert_allclose(b.trace_[field], a.trace_[field], rtol=rtol, err_msg=field)


@pytest.fixture(scope='module')
def client():
    distributed = pytest.importorskip('distributed')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c: yield c


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('scheduler', ['synchronous', 'threads', 'distributed'])
def test_dask_fit_equals_in_memory_fit(case, scheduler, request):
    make, data = CASES[case]
    X = data()
    ref = fit_quietly(make(), X)
    Xd = da.from_array(X, chunks=(700, 2))                      # uneven row chunks, columns split (rechunked)
    if scheduler == 'distributed':
        request.getfixturevalue('client')
        got = fit_quietly(make(), Xd)
    else:
        with dask.config.set(scheduler=scheduler): got = fit_quietly(make(), Xd)
    assert_same_fit(ref, got)


def test_dask_weights_chunked_like_X_and_numpy_weights():
    X = counts_data()
    w = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    make = CASES['poisson'][0]
    ref = fit_quietly(make(), X, sample_weight=w)
    Xd = da.from_array(X, chunks=500)
    with dask.config.set(scheduler='synchronous'):
        for wd in (da.from_array(w, chunks=500), w):
            assert_same_fit(ref, fit_quietly(make(), Xd, sample_weight=wd))


def test_dask_kmeans_start_on_a_sample():
    "k-means on all rows (sample at least n) gives the in-memory start; a smaller sample gives a good fit too."
    X = gaussian_data(seed=4)
    Xd = da.from_array(X, chunks=1000)
    ref = fit_quietly(GaussianMixture(3, random_state=0, tol=1e-9), X)
    with dask.config.set(scheduler='synchronous'):
        got = fit_quietly(GaussianMixture(3, random_state=0, tol=1e-9), Xd)
        assert_same_fit(ref, got)
        small = fit_quietly(PoissonMixture(2, random_state=0, tol=1e-9, init_sample_size=300), da.from_array(counts_data(), chunks=1000))
    big = fit_quietly(PoissonMixture(2, random_state=0, tol=1e-9), counts_data())
    np.testing.assert_allclose(np.sort(small.means_, 0), np.sort(big.means_, 0), rtol=1e-5)


def test_dask_predictions_are_lazy_and_the_estimator_pickles_small():
    X = counts_data()
    Xd = da.from_array(X, chunks=700)
    with dask.config.set(scheduler='synchronous'):
        est = fit_quietly(PoissonMixture(2, random_state=0), Xd)
        for method in ('predict', 'predict_proba', 'score_samples'):
            out = getattr(est, method)(Xd)
            assert isinstance(out, da.Array), method
            np.testing.assert_allclose(out.compute(), getattr(est, method)(X), rtol=1e-12)
        score = est.score(Xd)
        assert isinstance(score, float)
        np.testing.assert_allclose(score, est.score(X), rtol=1e-12)
        w = np.arange(len(X)) % 3
        np.testing.assert_allclose(est.score(Xd, sample_weight=da.from_array(w, chunks=700)), est.score(X, sample_weight=w),
                                   rtol=1e-12)
        np.testing.assert_allclose(est.bic(Xd), est.bic(X), rtol=1e-12)
        labels = est.fit_predict(Xd)
        assert isinstance(labels, da.Array)
    blob = pickle.dumps(est)
    assert len(blob) < 20_000 and b'dask' not in blob
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), est.predict(X))


def test_dask_bad_input():
    X = counts_data(600)
    make = CASES['poisson'][0]
    bad = X.copy(); bad[437, 2] = np.nan
    with dask.config.set(scheduler='synchronous'):
        with pytest.raises(ValueError, match='contains NaN') as numpy_error: make().fit(bad)
        with pytest.raises(ValueError, match=r'contains NaN.*row 437') as dask_error: make().fit(da.from_array(bad, chunks=100))
        numpy_head, dask_head = str(numpy_error.value).split('\n')[0], str(dask_error.value).split('\n')[0]
        assert dask_head == numpy_head.rstrip('.') + ' (first at row 437).'
        assert str(dask_error.value).split('\n')[1:] == str(numpy_error.value).split('\n')[1:]
        neg = X.copy(); neg[333, 1] = -1
        with pytest.raises(ValueError, match='row 333, column 1'): make().fit(da.from_array(neg, chunks=100))
        with pytest.raises(ValueError, match='2D'): make().fit(da.from_array(X[:, 0], chunks=100))
        with pytest.raises(ValueError, match='chunked like'):
            make().fit(da.from_array(X, chunks=100), sample_weight=da.ones(600, chunks=150))
        with pytest.raises(ValueError, match='sample_weight'):
            make().fit(da.from_array(X, chunks=100), sample_weight=np.ones(5))
        with pytest.raises(ValueError, match='Negative values in data passed to sample_weight'):
            make().fit(da.from_array(X, chunks=100), sample_weight=-da.ones(600, chunks=100))
        Xu = da.from_array(X, chunks=100)
        Xu = Xu[Xu[:, 0] >= 0]                                      # unknown chunk sizes
        with pytest.raises(ValueError, match='unknown size'): make().fit(Xu)
        est = make()
        with pytest.raises(ValueError): est.fit(da.from_array(bad, chunks=100))
        assert not hasattr(est, 'means_')                           # a failed fit leaves the estimator as it was


def test_memmap_and_h5py_like_rows_equal_in_memory(tmp_path):
    X = gaussian_data(40_000, seed=5)
    path = tmp_path / 'X.npy'
    np.save(path, X)
    make = CASES['gmm-full'][0]
    ref = fit_quietly(make(), X)
    got = fit_quietly(make(), np.load(path, mmap_mode='r'))
    assert_same_fit(ref, got, rtol=1e-13)

    class Rows:
        "An h5py-like dataset: shape, dtype, row slicing; records the most rows read at once."
        def __init__(self, X): self.X, self.shape, self.dtype, self.most = X, X.shape, X.dtype, 0
        def __getitem__(self, key):
            out = self.X[key]
            self.most = max(self.most, len(out))
            return out.copy()
    rows = Rows(X.astype(np.float32) if False else X)
    got = fit_quietly(make(), rows)
    assert_same_fit(ref, got, rtol=1e-13)
    assert rows.most <= 16_384                                      # never the whole array
    np.testing.assert_allclose(got.predict_proba(rows), ref.predict_proba(X), rtol=1e-12)
    counts = (np.abs(X[:, :2]) * 3).round()                         # an integer memmap: read as float blocks
    ipath = tmp_path / 'C.npy'
    np.save(ipath, counts.astype(np.int32))
    np.testing.assert_allclose(fit_quietly(PoissonMixture(2, random_state=0), np.load(ipath, mmap_mode='r')).means_,
                               fit_quietly(PoissonMixture(2, random_state=0), counts).means_, rtol=1e-12)


def lazy_rows(n, d=8, chunk=100_000):
    "A Dask array generated chunk by chunk (never whole in memory): two Gaussian clumps."
    def make(block_info=None):
        (a, b), _ = block_info[None]['array-location']
        rng = np.random.default_rng(a)
        z = rng.random(b - a) < 0.5
        out = rng.standard_normal((b - a, d))
        out[z] += 3.0
        return out
    chunks = ((chunk,) * (n // chunk), (d,))
    return da.map_blocks(make, chunks=chunks, dtype=np.float64, meta=np.empty((0, 0)))


def peak_fraction(n, chunk):
    "Peak traced memory of a fit over the size of X (after a warm-up fit, so that one-off imports do not count)."
    # (the Gaussian kernels keep a few MB of scratch whatever the data's size, so X must be much larger than that)
    X = lazy_rows(n, chunk=chunk)
    nbytes = n * 8 * 8
    with dask.config.set(scheduler='synchronous'):
        fit_quietly(GaussianMixture(2, covariance_type='diag', init_params='random_from_data', max_iter=1), lazy_rows(2000, chunk=1000))
        tracemalloc.start()
        est = fit_quietly(GaussianMixture(2, covariance_type='diag', init_params='random_from_data', random_state=0,
                                          max_iter=3), X)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    np.testing.assert_allclose(np.sort(est.means_[:, 0]), [0, 3], atol=0.05)
    print(f'{n} x 8 rows: peak traced memory {peak / 2**20:.1f} MiB = {peak / nbytes:.3f} of X')
    return peak / nbytes


def test_lazy_dask_array_fits_in_a_fraction_of_its_size():
    assert peak_fraction(1_000_000, 25_000) < 0.25


def test_lazy_2e6_by_8_dask_array_fits_in_a_quarter_of_its_size():
    assert peak_fraction(2_000_000, 100_000) < 0.25


FAILS = []


class FailsOnce(PoissonMixture):
    "A Poisson mixture whose E-step fails the first time any task runs it (a worker lost mid-fit)."
    def _estimate_log_prob(self, X):
        if not FAILS:
            FAILS.append(1)
            raise RuntimeError('worker lost')
        return super()._estimate_log_prob(X)


def test_a_failed_task_is_retried_and_the_answer_is_unchanged(client):
    X = counts_data()
    ref = fit_quietly(PoissonMixture(2, init_params='random_from_data', random_state=2, tol=1e-9), X)
    FAILS.clear()
    got = fit_quietly(FailsOnce(2, init_params='random_from_data', random_state=2, tol=1e-9), da.from_array(X, chunks=500))
    assert FAILS == [1]
    assert_same_fit(ref, got)


def test_distributed_processes_true_pickles_everything():
    "One LocalCluster with worker processes: the model and its kernels travel by pickle."
    code = """
import warnings, numpy as np, dask.array as da
from distributed import Client, LocalCluster
from klem_nb.gmm import GaussianMixture
warnings.simplefilter('ignore')
if __name__ == '__main__':
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (1500, 3)), rng.normal(3, 1, (1500, 3))]
    make = lambda: GaussianMixture(2, init_params='random_from_data', random_state=0, tol=1e-9)
    ref = make().fit(X)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster):
        got = make().fit(da.from_array(X, chunks=500))
    np.testing.assert_allclose(got.means_, ref.means_, rtol=1e-10)
    np.testing.assert_allclose(got.trace_.free_energy, ref.trace_.free_energy, rtol=1e-10)
    print('same')
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == 'same'


def test_import_does_not_import_dask():
    code = "import sys, klem_nb, klem_nb.gmm, klem_nb.discrete; from klem_nb import em; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ['False'], out.stderr


# ---- online EM -----------------------------------------------------------------------------------------------------
def online_vs_batch(est_online, est_batch, X, batch=1000):
    for a in range(0, len(X), batch): est_online.partial_fit(X[a:a + batch])
    fit_quietly(est_batch, X)
    return est_online, est_batch


def test_online_poisson_one_pass_lands_within_a_few_standard_errors():
    rng = np.random.default_rng(7)
    n = 100_000
    z = rng.random(n) < 0.4
    lam = np.array([[2.0, 7.0, 1.0], [6.0, 2.0, 3.0]])
    X = rng.poisson(lam[z.astype(int)]).astype(float)
    on, bat = online_vs_batch(PoissonMixture(2, random_state=0), PoissonMixture(2, random_state=0, tol=1e-10), X)
    assert on.n_batch_iter_ == 100 and len(on.trace_) == 200
    order = np.argsort(on.means_[:, 0]), np.argsort(bat.means_[:, 0])
    m_on, m_b = on.means_[order[0]], bat.means_[order[1]]
    se = np.sqrt(m_b / (bat.weights_[order[1]][:, None] * n))      # Poisson rate: sqrt(λ / n_j)
    z_scores = np.abs(m_on - m_b) / se
    print('poisson online-vs-batch |z| max', z_scores.max().round(2), 'mean', z_scores.mean().round(2))
    assert z_scores.max() < 4


def test_online_gaussian_one_pass_lands_within_a_few_standard_errors():
    X = gaussian_data(100_000, seed=8)[np.random.default_rng(8).permutation(100_000)]
    on, bat = online_vs_batch(GaussianMixture(3, covariance_type='diag', random_state=0),
                              GaussianMixture(3, covariance_type='diag', random_state=0, tol=1e-10), X)
    o1, o2 = np.lexsort(on.means_.T[::-1]), np.lexsort(bat.means_.T[::-1])
    se = np.sqrt(bat.covariances_[o2] / (bat.weights_[o2][:, None] * len(X)))
    z_scores = np.abs(on.means_[o1] - bat.means_[o2]) / se
    print('gaussian online-vs-batch |z| max', z_scores.max().round(2), 'mean', z_scores.mean().round(2))
    assert z_scores.max() < 4
    assert np.isfinite(on.trace_.free_energy).all() and hasattr(on, 'precisions_')


def test_partial_fit_contract():
    X = counts_data(3000)
    est = PoissonMixture(2, random_state=0, learning_offset=0.0)
    with pytest.raises(ValueError, match='n_components'): est.partial_fit(X[:1])
    est.partial_fit(X[:3])                                          # starts θ; 3 rows < k (d + 1) = 10: no M-step yet
    assert est.n_batch_iter_ == 1 and list(est.trace_.step) == ['E']
    start = est.means_.copy()
    est.partial_fit(X[3:20])
    assert list(est.trace_.step) == ['E', 'E', 'M'] and not np.array_equal(est.means_, start)
    with pytest.raises(ValueError, match='features'): est.partial_fit(X[:10, :2])
    with pytest.raises(ValueError, match='learning_decay'): PoissonMixture(2, learning_decay=0.4).partial_fit(X)
    np.testing.assert_allclose(learning_rate(1, 0.6, 0.0), 1.0)
    np.testing.assert_allclose(learning_rate(10, 0.6, 10.0), 20 ** -0.6)
    np.testing.assert_allclose(learning_rate(4), 4 ** -0.7)
    with_init = PoissonMixture(2, weights_init=[0.5, 0.5], means_init=[[1, 1, 1, 1], [5, 5, 5, 5]]).partial_fit(X[:100])
    assert with_init.n_batch_iter_ == 1


# ---- incremental EM ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('case', ['poisson', 'gmm-full', 'gmm-diag', 'bernoulli'])
def test_incremental_em_is_monotone_and_reaches_batch_fixed_point(case):
    make, data = CASES[case]
    X = data()
    batch = fit_quietly(make().set_params(tol=1e-12, max_iter=3000), X)
    inc = make().set_params(tol=1e-12, max_iter=3000, algorithm='incremental')
    fit_quietly(inc, X)
    F = inc.trace_.free_energy
    assert (np.diff(F) <= 1e-12 * np.abs(F[1:])).all()
    assert len(inc.trace_) > 2 * inc.n_iter_                         # one E- and one M-row per block visit
    np.testing.assert_allclose(inc.means_, batch.means_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inc.score(X), batch.score(X), rtol=1e-9)
    np.testing.assert_allclose(inc.lower_bound_, -F[-1])
    assert inc.n_iter_ <= batch.n_iter_


def test_incremental_em_strict_mode_applies():
    X = counts_data()
    est = fit_quietly(PoissonMixture(2, init_params='random_from_data', random_state=2, max_iter=0), X)
    res = incremental_em(MixtureEMModel(est), X, tol=1e-10, max_iter=50, strict=True)
    assert res.converged
    class Wrong(MixtureEMModel):
        def m_step(self, stats):
            super().m_step(stats)
            self.estimator.means_ = self.estimator.means_ * 1.01
    est = fit_quietly(PoissonMixture(2, init_params='random_from_data', random_state=2, tol=1e-10), X)   # at the optimum
    with pytest.raises(FreeEnergyIncreaseError): incremental_em(Wrong(est), X, max_iter=5, strict=True)


def test_engine_em_on_dask_validates_once_and_agrees():
    X = counts_data()
    est = fit_quietly(PoissonMixture(2, init_params='random_from_data', random_state=2, max_iter=0), X)
    theta = est.weights_, est.means_
    r_np = em(MixtureEMModel(est), X, tol=1e-9)
    est.weights_, est.means_ = theta
    with dask.config.set(scheduler='synchronous'):
        r_da = em(MixtureEMModel(est), da.from_array(X, chunks=600), tol=1e-9)
        with pytest.raises(ValueError, match='negative'):
            em(MixtureEMModel(est), da.from_array(X, chunks=600), sample_weight=-np.ones(len(X)))
    np.testing.assert_allclose(r_da.ledger.free_energy, r_np.ledger.free_energy, rtol=1e-12)


def test_cli_fits_a_npy_file_memory_mapped(tmp_path, capsys):
    from klem_nb.cli import main
    X = gaussian_data(2000, d=2, seed=9)
    np.save(tmp_path / 'X.npy', X)
    assert main(['fit', str(tmp_path / 'X.npy'), '-k', '3', '--seed', '0']) == 0
    out = capsys.readouterr().out
    assert '2000 samples' in out and 'x0' in out
    np.save(tmp_path / 'v.npy', np.ones(3))
    assert main(['fit', str(tmp_path / 'v.npy'), '-k', '2']) == 2
    assert '2-D' in capsys.readouterr().err
    bad = X.copy(); bad[1234, 1] = np.nan
    np.save(tmp_path / 'bad.npy', bad)
    assert main(['fit', str(tmp_path / 'bad.npy'), '-k', '2']) == 2
    assert 'row 1234' in capsys.readouterr().err


def test_partial_fit_after_fit_continues_from_the_fitted_parameters_and_fit_ends_a_stream():
    X = gaussian_data(6000, seed=11)[np.random.default_rng(11).permutation(6000)]   # representative batches
    est = fit_quietly(GaussianMixture(3, random_state=0), X[:3000])
    before = est.means_.copy()
    est.partial_fit(X[3000:4000])
    assert est.n_batch_iter_ == 1 and est._box is None
    np.testing.assert_allclose(est.means_, before, atol=0.2)          # one step from the fit, not a new start
    fit_quietly(est, X)
    assert not hasattr(est, 'n_batch_iter_')


def test_memmap_drops_zero_weight_rows_like_in_memory(tmp_path):
    "A zero-weight row that no component can produce: in memory it is dropped; an out-of-core block drops it too."
    rng = np.random.default_rng(0)
    X = (rng.random((3000, 4)) < 0.5).astype(float)
    X[:, 0] = 0
    X[7, 0] = 1                                                     # impossible when every mean of column 0 is 0
    w = np.ones(len(X))
    w[7] = 0
    np.save(tmp_path / 'B.npy', X)
    means = np.c_[np.zeros(2), rng.uniform(0.2, 0.8, (2, 3))]
    def make(): return BernoulliMixture(2, means_init=means, weights_init=[0.5, 0.5], frozen=('means',), random_state=0)
    ref = make().fit(X, sample_weight=w)
    got = make().fit(np.load(tmp_path / 'B.npy', mmap_mode='r'), sample_weight=w)
    np.testing.assert_allclose(got.weights_, ref.weights_, rtol=1e-13)
    np.testing.assert_allclose(got.lower_bound_, ref.lower_bound_, rtol=1e-13)


def test_column_extremes_equal_numpys():
    "The validation's column minima and maxima (rows reduced 64 at a time) are numpy's, for any row count and order, NaN included."
    from klem_nb.base import _column_extremes
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 127, 128, 129, 1000, 10_001):
        X = rng.normal(size=(n, 5))
        for Y in (X, np.asfortranarray(X), X.astype(np.float32)):
            lo, hi = _column_extremes(Y)
            np.testing.assert_array_equal(lo, Y.min(0)); np.testing.assert_array_equal(hi, Y.max(0))
    X = rng.normal(size=(1000, 3)); X[700, 1] = np.nan
    lo, hi = _column_extremes(X)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and np.isfinite(lo[[0, 2]]).all()   # NaN shows, so the caller can look again


def test_column_variance_is_numpys():
    "The reg_covar warning's column variance (sums 64 rows at a time, squared deviations in slabs) is numpy's, weighted or not."
    from klem_nb.base import _column_sums, _squared_deviations
    from klem_nb.gmm import GaussianMixture
    rng = np.random.default_rng(1)
    for n in (1, 63, 129, 8193, 20_000):
        X = rng.normal(size=(n, 3)) * [1.0, 1e-3, 10.0] + 1e4          # far from 0: a one-pass E[x²] - μ² would cancel
        for Y in (X, np.asfortranarray(X), X.astype(np.float32)):
            np.testing.assert_allclose(_column_sums(Y), Y.astype(np.float64).sum(0), rtol=1e-12)
        w = rng.uniform(0.5, 2, n)
        est = GaussianMixture(2)
        np.testing.assert_allclose(est._column_variance(X, None), X.var(0), rtol=1e-9)
        mean = w @ X / w.sum()
        np.testing.assert_allclose(est._column_variance(X, w), w @ (X - mean)**2 / w.sum(), rtol=1e-9)
        np.testing.assert_allclose(_squared_deviations(X, mean, w, rows=7), w @ (X - mean)**2, rtol=1e-9)

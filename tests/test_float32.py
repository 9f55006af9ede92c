"""float32 input: computed in float32 where the rounding guard allows, float32 attributes, and the documented accuracy
(lower bound within 1e-5 relative of the float64 fit from the same start on well-conditioned data). See nbs/07_gaussian.ipynb
(the kernels' dtype) and nbs/17_speed.ipynb (what runs in float32 and why)."""
import warnings

import numpy as np
import pytest

from klem_nb import gaussian
from klem_nb.e_step import posterior
from klem_nb.gaussian import COVARIANCE_TYPES, GaussianKernels
from klem_nb.gmm import GaussianMixture

K = 4


def blobs(n=4000, d=6, k=K, offset=0.0, seed=0):
    "Well-separated blobs with random covariances, as float32 values (the float64 copy holds the very same numbers)."
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    A = rng.normal(size=(k, d, d)) / np.sqrt(d) + np.eye(d)
    z = rng.integers(k, size=n)
    X = centres[z] + np.einsum('nij,nj->ni', A[z], rng.normal(size=(n, d))) + offset
    return X.astype(np.float32)


def start(X, covariance_type, k=K, seed=1):
    "One start for both fits: k rows as means, the data's covariance for every component."
    rng = np.random.default_rng(seed)
    X = X.astype(np.float64)
    X = np.where(np.isnan(X), np.nanmean(X, axis=0), X)      # rows with NaN: column means, for the start only
    cov = np.cov(X, rowvar=False)
    prec = np.linalg.inv(cov)
    precisions = {'full': np.repeat(prec[None], k, axis=0), 'tied': prec,
                  'diag': np.repeat(1 / np.diag(cov)[None], k, axis=0),
                  'spherical': np.full(k, 1 / np.diag(cov).mean())}[covariance_type]
    return dict(weights_init=np.full(k, 1 / k), means_init=X[rng.choice(len(X), k, replace=False)],
                precisions_init=precisions)


def fit_pair(X32, covariance_type, max_iter=40, **kw):
    "The same start and the same number of iterations on the float32 values and on them as float64."
    init = start(X32, covariance_type)
    def fit(X):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return GaussianMixture(K, covariance_type=covariance_type, tol=0.0, max_iter=max_iter, **init, **kw).fit(X)
    return fit(X32), fit(X32.astype(np.float64))


@pytest.fixture(scope='module')
def X32(): return blobs()


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_float32_fit_matches_float64(X32, covariance_type):
    g32, g64 = fit_pair(X32, covariance_type)
    for name in ('weights_', 'means_', 'covariances_', 'precisions_', 'precisions_cholesky_'):
        assert getattr(g32, name).dtype == np.float32, name          # as scikit-learn's for float32 input
        assert getattr(g64, name).dtype == np.float64, name
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)      # the documented accuracy
    np.testing.assert_allclose(g32.means_, g64.means_, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(g32.predict(X32), g64.predict(X32))
    s32, s64 = g32.score_samples(X32), g64.score_samples(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g32.score(X32), g64.score(X32), rtol=1e-5)


def test_float64_stays_default():
    X = blobs(n=500).astype(np.float64)
    g = GaussianMixture(2, random_state=0).fit(X)
    assert g.means_.dtype == g.covariances_.dtype == g.precisions_cholesky_.dtype == np.float64
    g = GaussianMixture(2, random_state=0).fit(np.rint(X).astype(np.int64))      # integers: float64, as before
    assert g.means_.dtype == np.float64


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_kernels_compute_in_the_rows_dtype(X32, covariance_type):
    g = fit_pair(X32, covariance_type, max_iter=5)[1]
    kern = GaussianKernels(covariance_type, g.weights_, g.means_, g.precisions_cholesky_)
    L32, L64 = kern.log_joint(X32), kern.log_joint(X32.astype(np.float64))        # a float32 sibling serves X32
    assert L32.dtype == np.float32 and L64.dtype == np.float64
    np.testing.assert_allclose(L32, L64, rtol=1e-5, atol=1e-4)
    resp = posterior(L32)[0]
    assert resp.dtype == np.float32
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-6)
    s32, s64 = kern.stats(X32, resp), kern.stats(X32.astype(np.float64), resp.astype(np.float64))
    spread = np.abs(X32 - X32.mean(0)).max()
    scale = dict(nk=len(X32), sum_x=len(X32) * spread, sum_xx=len(X32) * spread**2)   # the size of the summed terms
    for key in s64:
        assert s32[key].dtype == np.float64                               # sums over chunks are float64
        np.testing.assert_allclose(s32[key], s64[key], rtol=0, atol=1e-6 * scale[key])


def test_offset_data_stays_on_the_fast_path():
    "Data at 1e4 with unit spread: the common frame c (exact in float32) removes the offset, so nothing goes direct."
    X32 = blobs(offset=1e4)
    g32, g64 = fit_pair(X32, 'full')
    kern = g32._kernels()._for(X32)
    assert kern.dtype == np.float32 and not kern._unsafe(X32, kern.mu).any()
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)


def far_narrow(n=3000, seed=2):
    "Ill-conditioned for the expanded square: one narrow component (sd 0.01) 1000 away from a wide one."
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0.0, 1.0, size=(n, 3)), rng.normal(1000.0, 0.01, size=(n, 3))])
    return X.astype(np.float32)


@pytest.mark.parametrize('covariance_type', ['full', 'diag'])
def test_far_narrow_components_go_direct(covariance_type):
    "The float32 guard sends the narrow component to the direct formula (x - μ_j in float64 per chunk): the fit stays accurate."
    X32 = far_narrow()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        g32 = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X32)
        g64 = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X32.astype(np.float64))
    kern = GaussianKernels(covariance_type, g32.weights_, g32.means_, g32.precisions_cholesky_, dtype=np.float32)
    assert kern._unsafe(X32, kern.mu)[np.argmax(g32.means_[:, 0])]          # the narrow one, at 1000
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)


def test_far_narrow_without_the_guard_loses_digits(monkeypatch):
    "Mutation: with the guard switched off the float32 expanded square is far off on the same data."
    X32 = far_narrow()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        g = GaussianMixture(2, covariance_type='full', random_state=0).fit(X32.astype(np.float64))
    kern = GaussianKernels('full', g.weights_, g.means_, g.precisions_cholesky_)
    exact = kern.log_joint(X32.astype(np.float64))
    np.testing.assert_allclose(kern.log_joint(X32), exact, rtol=1e-5, atol=1e-3)
    monkeypatch.setattr(gaussian, '_SAFE32', np.inf)
    unguarded = GaussianKernels('full', g.weights_, g.means_, g.precisions_cholesky_).log_joint(X32)
    assert np.abs(unguarded - exact).max() > 1.0


def test_missing_values_in_float32():
    "nan_policy='marginalize': rows with NaN compute in float64, complete rows in float32; attributes float32."
    X32 = blobs(n=2000)
    X32[np.random.default_rng(3).random(X32.shape) < 0.05] = np.nan
    X32[np.isnan(X32).all(1), 0] = 0.0
    g32, g64 = fit_pair(X32, 'diag', nan_policy='marginalize')
    assert g32.means_.dtype == np.float32
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)

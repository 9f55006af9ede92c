"""A diag or spherical fit keeps its feature table Φ = [x̃, x̃²] (spherical: [x̃, |x̃|²]) at a centre fixed for the fit and
fills it in its first E-step and reads it back in every later one (GaussianMixture._fit_frame, _KeptFeatures; nbs/07_gaussian.ipynb and
nbs/11_gmm.ipynb). The kept rows are the very numbers, in the very layout, that the kernels would form per chunk, so a
fit with them equals a fit without them bit for bit; they are used (a corrupted table changes the fit) and dropped when
the fit ends."""
import warnings

import numpy as np
import pytest

from klem_nb import gmm
from klem_nb.gaussian import GaussianKernels
from klem_nb.gmm import GaussianMixture


def blobs(n=6000, d=20, k=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d)) + 100.0            # off the origin: the centre matters
    X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
    return X.astype(dtype)


def fit(X, covariance_type, **kw):
    est = GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=20, tol=0.0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return est.fit(X)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('covariance_type', ['diag', 'spherical'])
def test_kept_features_change_nothing(covariance_type, dtype, monkeypatch):
    X = blobs(dtype=dtype)
    kept = fit(X, covariance_type)
    monkeypatch.setattr(gmm, 'KEEP_FEATURES_BYTES', 0)               # Φ formed chunk by chunk, at the same centre
    made = fit(X, covariance_type)
    for name in ('weights_', 'means_', 'covariances_'):
        np.testing.assert_array_equal(getattr(kept, name), getattr(made, name))
    assert kept.lower_bound_ == made.lower_bound_
    assert kept._fit_features is None and kept._centre is None       # nothing of the data outlives the fit


def test_kept_only_from_16_features_on():
    "Below d = 16 the kernels form features in a cheap feature-major pass, and the fit keeps none (memory for no gain)."
    for d, kept in ((5, False), (16, True)):
        est = GaussianMixture(3, covariance_type='diag')
        assert (est._fit_frame(blobs(n=500, d=d))[1] is not None) == kept
    assert GaussianMixture(3, covariance_type='full')._fit_frame(blobs(n=500)) == (None, None)


@pytest.mark.parametrize('d', [5, 20])                              # feature-major and row-major chunks
def test_feature_table_is_the_kernels_own(d):
    X = blobs(n=500, d=d)
    c = X.mean(0)
    kern = GaussianKernels('diag', np.ones(1), c[None], None, centre=c)
    Phi = kern.feature_table(X)
    np.testing.assert_array_equal(Phi, np.hstack([X - c, (X - c)**2]))
    sph = GaussianKernels('spherical', np.ones(1), c[None], None, centre=c).feature_table(X)
    np.testing.assert_array_equal(sph[:, :-1], X - c)
    np.testing.assert_allclose(sph[:, -1], ((X - c)**2).sum(1), rtol=1e-14)
    assert GaussianKernels('full', np.ones(1), c[None], None, centre=c).feature_table(X) is None


def test_kept_features_are_read(monkeypatch):
    "Mutation: a fit whose kept table is wrong comes out different, so the later E-steps read it (no silent recomputation)."
    X = blobs()
    good = fit(X, 'diag')
    real = gmm._KeptFeatures.keep
    def corrupted(self, X, phi):
        bad = phi.copy()
        bad[:, X.shape[1]:] *= 1.5                                  # x̃² wrong by half
        real(self, X, bad)
    monkeypatch.setattr(gmm._KeptFeatures, 'keep', corrupted)
    bad = fit(X, 'diag')
    assert abs(bad.lower_bound_ - good.lower_bound_) > 1e-3 * abs(good.lower_bound_)


@pytest.mark.parametrize('covariance_type', ['diag', 'spherical'])
def test_first_e_step_fills_the_whole_table(covariance_type, monkeypatch):
    "The table a fit keeps is filled by its first E-step, row for row the kernels' own `feature_table` at the fit's centre."
    X = blobs(n=20_000)
    seen, real = [], GaussianMixture._fit_frame
    def spy(self, X):
        c, kept = real(self, X)
        seen.append((c, kept))
        return c, kept
    monkeypatch.setattr(GaussianMixture, '_fit_frame', spy)
    fit(X, covariance_type, n_init=2)
    (c, kept), = seen
    assert kept.done.all()
    eager = GaussianKernels(covariance_type, np.ones(1), c[None], None, centre=c).feature_table(X)
    np.testing.assert_array_equal(kept.values, eager)


def test_rows_of_another_array_are_formed_per_chunk():
    "Rows that are not the fit's array (a copy, another dtype) do not take the kept table's rows."
    X = blobs(n=3000)
    est = fit(X, 'diag')
    c, kept = est._fit_frame(X)
    assert kept.rows_of(X[100:200]) is None                          # nothing filled yet
    kept.keep(X[100:200], np.ones((100, kept.values.shape[1])))
    assert kept.rows_of(X[100:200]) is not None and kept.rows_of(X[150:160]) is not None
    assert kept.rows_of(X[100:201]) is None                          # one row not yet filled
    kept.keep(X[100:200].copy(), np.ones((100, kept.values.shape[1])))   # not the fit's rows: nothing kept
    assert not kept.done[:100].any()
    assert kept.rows_of(X[100:200].copy()) is None and kept.rows_of(X[100:200].astype(np.float32)) is None

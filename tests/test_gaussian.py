"""Parity and property tests for klem_nb.gaussian (nbs/07_gaussian.ipynb holds the derivation and worked checks).

scikit-learn's private mixture helpers are the reference here, and only here: the notebook checks against
scipy and against an optimiser instead.
"""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from sklearn.mixture import _gaussian_mixture as skgm

from klem_nb.gaussian import (COVARIANCE_TYPES, _check_covariance_type, check_gaussian_parameters,
                              compute_precision_cholesky, estimate_gaussian_parameters,
                              estimate_log_gaussian_prob, full_covariances, gaussian_parameters_from_stats,
                              gaussian_stats, log_det_cholesky)

FAST = settings(max_examples=60, deadline=None)
DELTA = 10 * np.finfo(np.float64).eps
SIZES = [(1, 1, 1), (50, 1, 3), (200, 2, 2), (300, 3, 4), (120, 5, 3), (80, 8, 2)]   # (n, d, k)


def _data(seed, n, d, k, offset=0.0):
    "Anisotropic data and responsibilities whose rows sum to one."
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(scale=3, size=d) + offset
    resp = rng.dirichlet(np.full(k, 0.8), size=n)
    return X, resp


def _close(a, b, rtol):
    "assert_allclose with an absolute floor relative to the array's scale (for entries that cancel to ~0)."
    b = np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(initial=0), 1e-300))


# ---- parity with scikit-learn's private helpers ---------------------------------------------------

@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('reg_covar', [0.0, 1e-6, 1e-2])
def test_m_step_matches_sklearn(covariance_type, size, reg_covar):
    n, d, k = size
    X, resp = _data(n * 31 + d, n, d, k)
    ours = estimate_gaussian_parameters(X, resp, reg_covar, covariance_type)
    ref = skgm._estimate_gaussian_parameters(X, resp, reg_covar, covariance_type)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape, (a.shape, b.shape)
        _close(a, b, 1e-12)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('size', SIZES[1:])
def test_precisions_and_log_prob_match_sklearn(covariance_type, size):
    n, d, k = size
    X, resp = _data(n + 7 * d, n, d, k)
    _, means, cov = skgm._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    pc = compute_precision_cholesky(cov, covariance_type)
    pc_ref = skgm._compute_precision_cholesky(cov, covariance_type)
    assert pc.shape == pc_ref.shape
    _close(pc, pc_ref, 1e-12)
    _close(log_det_cholesky(pc, covariance_type, d),
           skgm._compute_log_det_cholesky(pc_ref, covariance_type, d), 1e-12)
    np.testing.assert_allclose(estimate_log_gaussian_prob(X, means, pc, covariance_type),
                               skgm._estimate_log_gaussian_prob(X, means, pc_ref, covariance_type),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_score_samples_of_a_fitted_sklearn_model(covariance_type):
    "log(weights) + our log-densities, log-summed, is sklearn's score_samples (the target of the estimator)."
    X, _ = _data(3, 400, 3, 3)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ours = logsumexp(np.log(gm.weights_) + estimate_log_gaussian_prob(
        X, gm.means_, compute_precision_cholesky(gm.covariances_, covariance_type), covariance_type), axis=1)
    np.testing.assert_allclose(ours, gm.score_samples(X), rtol=1e-10, atol=1e-10)
    # and our M-step on sklearn's own responsibilities reproduces sklearn's M-step
    _, log_resp = gm._e_step(X)
    ours = estimate_gaussian_parameters(X, np.exp(log_resp), gm.reg_covar, covariance_type)
    ref = skgm._estimate_gaussian_parameters(X, np.exp(log_resp), gm.reg_covar, covariance_type)
    for a, b in zip(ours, ref): _close(a, b, 1e-12)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('column_mass', [0.0, 1e-15, 1e-9])
def test_empty_and_nearly_empty_component(covariance_type, column_mass):
    X, resp = _data(11, 100, 3, 3)
    resp[:, 1] *= column_mass
    resp /= resp.sum(1, keepdims=True)          # rows still sum to one, as in sklearn's EM (its 'tied' relies on it)
    ours = estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    ref = skgm._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    for a, b in zip(ours, ref): _close(a, b, 1e-12)
    assert all(np.isfinite(a).all() for a in ours)
    stats = gaussian_stats(X, resp, covariance_type, shift=ours[1] + 0.5)
    for a, b in zip(gaussian_parameters_from_stats(stats, 1e-6, covariance_type, shift=ours[1] + 0.5), ours):
        _close(a, b, 1e-9)


# ---- block form ------------------------------------------------------------------------------------

def _block_stats(X, wresp, covariance_type, shift, edges):
    blocks = [gaussian_stats(X[a:b], wresp[a:b], covariance_type, shift) for a, b in zip(edges[:-1], edges[1:])]
    return {key: sum(s[key] for s in blocks) for key in blocks[0]}


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('shift_kind', ['none', 'random', 'means'])
@pytest.mark.parametrize('seed', range(4))
def test_block_stats_add_up(covariance_type, shift_kind, seed):
    rng = np.random.default_rng(seed)
    n, d, k = 257, int(rng.integers(1, 5)), int(rng.integers(1, 5))
    X, resp = _data(seed, n, d, k)
    wresp = resp * rng.uniform(0.2, 3.0, size=(n, 1))                  # sample weights folded in
    expected = estimate_gaussian_parameters(X, wresp, 1e-6, covariance_type)
    shift = {'none': None, 'random': rng.normal(scale=3, size=(k, d)), 'means': expected[1]}[shift_kind]
    edges = np.unique(np.r_[0, rng.integers(0, n, size=5), n])
    stats = _block_stats(X, wresp, covariance_type, shift, edges)
    assert set(stats) == {'nk', 'sum_x', 'sum_xx'}
    got = gaussian_parameters_from_stats(stats, 1e-6, covariance_type, shift)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        _close(a, b, 1e-10)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_shift_keeps_digits_with_large_offset(covariance_type):
    "Shifted by the true means, the block form equals scikit-learn's centred ('full') computation on X + 1e4."
    X, resp = _data(5, 500, 3, 3, offset=1e4)
    nk, means, full = skgm._estimate_gaussian_parameters(X, resp, 0.0, 'full')    # centred: diff = X - mean
    diag = np.diagonal(full, axis1=1, axis2=2) + DELTA * means**2 / nk[:, None]  # sklearn's diag, computed centred
    ref = {'full': full, 'diag': diag, 'spherical': diag.mean(1),
           'tied': ((nk[:, None, None] * full).sum(0) + DELTA * means.T @ means) / nk.sum()}[covariance_type]
    got = gaussian_parameters_from_stats(_block_stats(X, resp, covariance_type, means, (0, 100, 333, 500)),
                                         0.0, covariance_type, means)
    _close(got[1], means, 1e-14)
    _close(got[2], ref, 1e-10)
    # without the shift the same computation loses about half the digits
    unshifted = gaussian_parameters_from_stats(gaussian_stats(X, resp, covariance_type), 0.0, covariance_type)
    assert np.abs(unshifted[2] - ref).max() / np.abs(ref).max() > 1e-11


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_integer_sample_weights_equal_repeated_rows(covariance_type):
    "resp * w with integer w is the same M-step as repeating each row w times (this is where 'tied' needs row sums)."
    rng = np.random.default_rng(8)
    X, resp = _data(8, 60, 3, 3)
    w = rng.integers(0, 4, size=60)
    weighted = estimate_gaussian_parameters(X, resp * w[:, None], 1e-6, covariance_type)
    repeated = estimate_gaussian_parameters(np.repeat(X, w, axis=0), np.repeat(resp, w, axis=0), 1e-6,
                                            covariance_type)
    for a, b in zip(weighted, repeated): _close(a, b, 1e-10)


# ---- log-densities: property test against scipy -----------------------------------------------------

@FAST
@given(st.integers(1, 5), st.integers(1, 4), st.sampled_from(COVARIANCE_TYPES), st.integers(0, 2**32 - 1))
def test_log_prob_matches_scipy(d, k, covariance_type, seed):
    rng = np.random.default_rng(seed)
    X, means = rng.normal(scale=2, size=(30, d)), rng.normal(size=(k, d))
    A = rng.normal(size=(k, d, d))
    full = A @ np.swapaxes(A, 1, 2) / d + 0.2 * np.eye(d)
    var = np.diagonal(full, axis1=1, axis2=2)
    cov, covs = {'full': (full, full),
                 'tied': (full[0], np.broadcast_to(full[0], (k, d, d))),
                 'diag': (var, var[:, :, None] * np.eye(d)),
                 'spherical': (var.mean(1), var.mean(1)[:, None, None] * np.eye(d))}[covariance_type]
    got = estimate_log_gaussian_prob(X, means, compute_precision_cholesky(cov, covariance_type), covariance_type)
    expected = np.stack([np.atleast_1d(scipy.stats.multivariate_normal(means[j], covs[j]).logpdf(X))
                         for j in range(k)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ---- errors ------------------------------------------------------------------------------------------

def test_precision_errors_name_the_component():
    covs = np.stack([np.eye(3), np.eye(3), np.ones((3, 3))])
    with pytest.raises(ValueError, match='component 2.*reg_covar'):
        compute_precision_cholesky(covs, 'full')
    with pytest.raises(ValueError, match='duplicate points or constant features'):
        compute_precision_cholesky(covs, 'full')
    with pytest.raises(ValueError, match='tied covariance'):
        compute_precision_cholesky(np.zeros((2, 2)), 'tied')
    with pytest.raises(ValueError, match='component 0'):
        compute_precision_cholesky(np.array([[0.0, 1.0], [1.0, 1.0]]), 'diag')
    with pytest.raises(ValueError, match='component 1'):
        compute_precision_cholesky(np.array([1.0, -1e-300]), 'spherical')
    with pytest.raises(ValueError, match='component 0'):                     # NaN is not a LinAlgError either
        compute_precision_cholesky(np.full((1, 2, 2), np.nan), 'full')


def test_collapsed_component_in_an_m_step():
    "A component that owns two identical points: singular without reg_covar, fine with it."
    X = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 4.0], [5.5, 6.0]])
    resp = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], dtype=float)
    _, _, cov = estimate_gaussian_parameters(X, resp, 0.0, 'full')
    with pytest.raises(ValueError, match='component 0'):
        compute_precision_cholesky(cov, 'full')
    _, _, cov = estimate_gaussian_parameters(X, resp, 1e-6, 'full')
    assert np.isfinite(compute_precision_cholesky(cov, 'full')).all()


@pytest.mark.parametrize('kwargs, match', [
    (dict(X=[[0.0, np.nan]]), 'X contains NaN'),
    (dict(X=[[0.0, -np.inf]]), 'X contains inf'),
    (dict(X=[1.0, 2.0]), r'X must have shape \(\?, \?\)'),
    (dict(X=np.zeros((0, 2))), 'at least one row'),
    (dict(X=[['a', 'b']]), 'X must be a numeric array'),
    (dict(X=np.ones((4, 2)), covariance_type='ful'), 'covariance_type must be one of'),
    (dict(X=np.ones((4, 2)), reg_covar=-1e-9), 'reg_covar must be a finite number >= 0'),
    (dict(X=np.ones((4, 2)), reg_covar=np.nan), 'reg_covar'),
    (dict(X=np.ones((4, 2)), resp=np.ones((3, 2))), r'resp must have shape \(4, \?\)'),
    (dict(X=np.ones((4, 2)), resp=np.full((4, 2), np.inf)), 'resp contains inf'),
    (dict(X=np.ones((4, 2)), resp=-np.ones((4, 2))), 'resp has negative'),
    (dict(X=np.ones((4, 2)), resp=np.ones((4, 3)), means=np.ones((2, 2))), r'means must have shape \(3, 2\)'),
    (dict(X=np.ones((4, 2)), means=np.ones((3, 3))), r'means must have shape \(\?, 2\)'),
    (dict(X=np.ones((4, 2)), covariance_type='diag', means=np.ones((3, 2)), covariances=np.ones(3)),
     r'covariances must have shape \(3, 2\)'),
    (dict(X=np.ones((4, 2)), covariance_type='spherical', covariances=np.array([1.0, 0.0])), 'component 1'),
    (dict(X=np.ones((4, 2)), covariance_type='tied', covariances=np.array([[1.0, 0.5], [0.0, 1.0]])), 'symmetric'),
])
def test_check_gaussian_parameters_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_gaussian_parameters(**kwargs)


def test_check_gaussian_parameters_accepts_and_converts():
    X = [[1, 2], [3, 4], [5, 7]]
    out = check_gaussian_parameters(X, 'tied', 1e-6, resp=np.full((3, 2), 0.5), means=np.zeros((2, 2)),
                                    covariances=np.eye(2))
    assert out.dtype == np.float64 and out.shape == (3, 2)
    for t, cov in zip(COVARIANCE_TYPES, (np.stack([np.eye(2)] * 2), np.eye(2), np.ones((2, 2)), np.ones(2))):
        check_gaussian_parameters(X, t, covariances=cov)
    assert _check_covariance_type('spherical') == 'spherical'
    for bad in (None, 'Full', 3, ('full',)):
        with pytest.raises(ValueError, match='covariance_type'):
            _check_covariance_type(bad)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_full_covariances_expands_every_type(covariance_type):
    "Each type expands to the k matrices it stands for; the precision factors expand to the inverse covariances."
    rng = np.random.default_rng(7)
    k, d = 3, 4
    A = rng.normal(size=(k, d, d))
    full = A @ A.transpose(0, 2, 1) + np.eye(d)
    cov = {'full': full, 'tied': full[0], 'diag': np.diagonal(full, axis1=1, axis2=2).copy(),
           'spherical': np.diagonal(full, axis1=1, axis2=2).mean(1)}[covariance_type]
    expected = {'full': full, 'tied': np.stack([full[0]] * k), 'diag': np.stack([np.diag(np.diag(f)) for f in full]),
                'spherical': np.stack([np.diag(f).mean() * np.eye(d) for f in full])}[covariance_type]
    got = full_covariances(cov, covariance_type, k, d)
    assert got.shape == (k, d, d) and got.flags.writeable
    np.testing.assert_array_equal(got, expected)
    pc = compute_precision_cholesky(cov, covariance_type)
    prec = (full_covariances(pc ** 2, covariance_type, k, d) if covariance_type in ('diag', 'spherical')
            else np.broadcast_to(pc @ np.swapaxes(pc, -1, -2), (k, d, d)))
    np.testing.assert_allclose(prec, np.linalg.inv(expected), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="got 'banded'"):
        full_covariances(cov, 'banded', k, d)

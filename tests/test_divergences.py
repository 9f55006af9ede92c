"""Property tests for klem_nb.divergences (the notebook 00_divergences.ipynb holds the worked examples)."""
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from klem_nb.divergences import cross_entropy, entropy, kl_divergence, kl_mvn

FAST = settings(max_examples=100, deadline=None)

# ---- strategies ---------------------------------------------------------------------------------

_weights = st.floats(0, 1, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def dists(draw, k=None, positive=False):
    "A normalised probability vector; exact zeros are allowed unless `positive`."
    k = draw(st.integers(1, 8)) if k is None else k
    w = draw(hnp.arrays(float, k, elements=_weights))
    if positive: w = w + 1e-3
    if w.sum() < 1e-6: w[draw(st.integers(0, k - 1))] = 1.0
    return w / w.sum()


@st.composite
def dist_pairs(draw, positive_q=True):
    "Two distributions on the same k outcomes; q is strictly positive unless `positive_q` is False."
    k = draw(st.integers(1, 8))
    return draw(dists(k)), draw(dists(k, positive=positive_q))


def _stack(seed, shape, axis):
    "Dirichlet draws of the given shape, normalised along `axis`."
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(shape[axis], 0.7), size=shape[:axis] + shape[axis + 1:])
    return np.moveaxis(x, -1, axis)


def _spd(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T / d + 0.3 * np.eye(d)


gaussians = st.tuples(st.integers(1, 5), st.integers(0, 2**32 - 1))


def _gaussian_pair(ds):
    "From a (d, seed) draw of `gaussians`: the generator, two means (d,) and two SPD covariances (d, d)."
    d, seed = ds
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)


# ---- discrete: agreement with scipy and with the definitions --------------------------------------

@FAST
@given(dist_pairs(positive_q=False))
def test_matches_scipy(pq):
    p, q = pq
    np.testing.assert_allclose(entropy(p), scipy.stats.entropy(p), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(kl_divergence(p, q), scipy.stats.entropy(p, q), rtol=1e-10, atol=1e-14)


@FAST
@given(dist_pairs(positive_q=False))
def test_cross_entropy_is_plain_sum(pq):
    p, q = pq
    on = p > 0
    expected = math.inf if (q[on] == 0).any() else -float((p[on] * np.log(q[on])).sum())
    np.testing.assert_allclose(cross_entropy(p, q), expected, rtol=1e-12, atol=1e-15)


@FAST
@given(dist_pairs())
def test_gibbs(pq):
    p, q = pq
    assert kl_divergence(p, q) >= 0
    assert kl_divergence(p, p) == 0
    assert kl_divergence(q, q) == 0
    assert kl_divergence(p, q) >= 0.5 * np.abs(p - q).sum() ** 2 - 1e-12      # Pinsker


@FAST
@given(dist_pairs())
def test_kl_is_cross_entropy_minus_entropy(pq):
    p, q = pq
    np.testing.assert_allclose(kl_divergence(p, q), cross_entropy(p, q) - entropy(p), rtol=1e-10, atol=1e-13)


@FAST
@given(dists())
def test_entropy_bounds(p):
    h = entropy(p)
    assert -1e-15 <= h <= math.log(len(p)) + 1e-12
    np.testing.assert_allclose(cross_entropy(p, p), h, rtol=1e-14, atol=1e-15)


def test_zero_conventions():
    p = np.array([0.0, 0.5, 0.5])
    q = np.array([1.0, 0.0, 0.0])
    assert entropy([0.0, 1.0]) == 0.0
    assert kl_divergence(p, [0.0, 0.5, 0.5]) == 0.0        # 0 log(0/0) = 0
    assert kl_divergence(p, q) == math.inf
    assert cross_entropy(p, q) == math.inf
    assert kl_divergence(q, p) == math.inf


def test_scalar_return_types():
    p, q = np.array([0.25, 0.75]), np.array([0.5, 0.5])
    for value in (entropy(p), cross_entropy(p, q), kl_divergence(p, q), kl_mvn([0.0], [[1.0]], [1.0], [[2.0]])):
        assert type(value) is float
    assert isinstance(kl_divergence(p[None], q), np.ndarray)


def test_near_equal_pairs_are_not_negative():
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(40), size=2000)
    Q = P * (1 + 1e-9 * rng.normal(size=P.shape))
    Q /= Q.sum(1, keepdims=True)
    assert (kl_divergence(P, Q) >= 0).all()


# ---- shapes and axes ------------------------------------------------------------------------------

@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_broadcast_rows_against_one(n, k, seed):
    P, q = _stack(seed, (n, k), 1), _stack(seed + 1, (k,), 0)
    for f in (kl_divergence, cross_entropy):
        np.testing.assert_allclose(f(P, q), [f(row, q) for row in P], rtol=1e-14)
        np.testing.assert_allclose(f(q, P), [f(q, row) for row in P], rtol=1e-14)
    np.testing.assert_allclose(entropy(P), [entropy(row) for row in P], rtol=1e-14)


@FAST
@given(st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4)), st.integers(0, 2**32 - 1))
def test_middle_axis(shape, seed):
    A, B = _stack(seed, shape, 1), _stack(seed + 1, shape, 1)
    moved = lambda x: np.moveaxis(x, 1, -1)
    for f in (kl_divergence, cross_entropy):
        expected = f(moved(A), moved(B))
        np.testing.assert_allclose(f(A, B, axis=1), expected, rtol=1e-14)
        np.testing.assert_allclose(f(A, B, axis=-2), expected, rtol=1e-14)
    np.testing.assert_allclose(entropy(A, axis=1), entropy(moved(A)), rtol=1e-14)
    assert kl_divergence(A, B, axis=1).shape == (shape[0], shape[2])


def test_axis_refers_to_broadcast_shape():
    P = _stack(0, (3, 4), 0)                # columns are distributions on 3 outcomes
    q = _stack(1, (3,), 0)[:, None]         # (3, 1) broadcasts along the columns
    np.testing.assert_allclose(kl_divergence(P, q, axis=0), [kl_divergence(P[:, j], q[:, 0]) for j in range(4)])


# ---- Gaussians ------------------------------------------------------------------------------------

def _kl_1d(mu0, s0, mu1, s1):
    return math.log(s1 / s0) + (s0 ** 2 + (mu0 - mu1) ** 2) / (2 * s1 ** 2) - 0.5


@FAST
@given(gaussians)
def test_kl_mvn_nonnegative_and_zero_on_identical(ds):
    _, m0, m1, S0, S1 = _gaussian_pair(ds)
    assert kl_mvn(m0, S0, m1, S1) >= 0
    assert abs(kl_mvn(m0, S0, m0, S0)) < 1e-12


@FAST
@given(st.floats(-5, 5), st.floats(0.05, 5), st.floats(-5, 5), st.floats(0.05, 5))
def test_kl_mvn_matches_1d_formula(mu0, s0, mu1, s1):
    np.testing.assert_allclose(kl_mvn([mu0], [[s0 ** 2]], [mu1], [[s1 ** 2]]), _kl_1d(mu0, s0, mu1, s1),
                               rtol=1e-10, atol=1e-12)


@FAST
@given(gaussians)
def test_kl_mvn_diagonal_is_sum_of_1d(ds):
    d, seed = ds
    rng = np.random.default_rng(seed)
    m0, m1 = rng.normal(size=d), rng.normal(size=d)
    s0, s1 = rng.uniform(0.2, 3, size=d), rng.uniform(0.2, 3, size=d)
    expected = sum(_kl_1d(*args) for args in zip(m0, s0, m1, s1))
    np.testing.assert_allclose(kl_mvn(m0, np.diag(s0 ** 2), m1, np.diag(s1 ** 2)), expected, rtol=1e-10)


@FAST
@given(gaussians)
def test_kl_mvn_affine_invariance(ds):
    rng, m0, m1, S0, S1 = _gaussian_pair(ds)
    d = len(m0)
    Qm, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A, b = Qm * rng.uniform(0.5, 2, size=d), rng.normal(size=d)     # well conditioned, invertible
    sym = lambda S: (S + S.T) / 2
    transformed = kl_mvn(A @ m0 + b, sym(A @ S0 @ A.T), A @ m1 + b, sym(A @ S1 @ A.T))
    np.testing.assert_allclose(transformed, kl_mvn(m0, S0, m1, S1), rtol=1e-8, atol=1e-10)


# ---- bad input ------------------------------------------------------------------------------------

GOOD = np.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize("call, message", [
    (lambda: entropy([0.5, -0.1, 0.6]), "p has negative"),
    (lambda: kl_divergence(GOOD, [0.6, -0.1, 0.5]), "q has negative"),
    (lambda: entropy([0.5, np.nan, 0.5]), "p contains NaN"),
    (lambda: cross_entropy(GOOD, [0.5, np.nan, 0.5]), "q contains NaN"),
    (lambda: kl_divergence([np.inf, 0, 0], GOOD), "p contains inf"),
    (lambda: kl_divergence(GOOD, [0, -np.inf, 1]), "q contains inf"),
    (lambda: entropy([1, 2, 3]), "p must sum to 1"),
    (lambda: cross_entropy(GOOD, GOOD * (1 + 1e-7)), "q must sum to 1"),
    (lambda: kl_divergence(_stack(0, (3, 4), 1), GOOD), "shape"),
    (lambda: entropy(1.0), "shape"),
    (lambda: kl_divergence(np.full((3, 2), 0.5), [0.5, 0.5], axis=0), "p must sum to 1 along axis 0"),
    (lambda: kl_mvn([0, 0], -np.eye(2), [0, 0], np.eye(2)), "cov0 is not positive definite"),
    (lambda: kl_mvn([0, 0], np.eye(2), [0, 0], np.diag([1.0, 0.0])), "cov1 is not positive definite"),
    (lambda: kl_mvn([0, 0], [[1, 0.5], [0, 1]], [0, 0], np.eye(2)), "positive definite"),
    (lambda: kl_mvn([0, 0], np.eye(2), [0, 0, 0], np.eye(3)), "shape"),
    (lambda: kl_mvn([0, 0], np.eye(3), [0, 0], np.eye(2)), "cov0 must have shape"),
    (lambda: kl_mvn(np.zeros((1, 2)), np.eye(2), [0, 0], np.eye(2)), "mean0 must have shape"),
    (lambda: kl_mvn([0, np.nan], np.eye(2), [0, 0], np.eye(2)), "mean0 contains NaN"),
    (lambda: kl_mvn([0, 0], np.eye(2), [0, 0], np.diag([1.0, np.inf])), "cov1 contains inf"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sum_tolerance_accepts_rounding():
    assert math.isclose(entropy(np.full(7, 1 / 7)), math.log(7), rel_tol=1e-14)
    kl_divergence(GOOD * (1 + 5e-9), GOOD)     # within 1e-8: accepted

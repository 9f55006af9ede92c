"""Property tests for klem_nb.free_energy (the notebook 02_free_energy.ipynb holds the worked examples)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import logsumexp

from klem_nb.checks import source_lines
from klem_nb.free_energy import _elbo_rows, _kl_gap_rows, elbo, free_energy, kl_gap

FAST = settings(max_examples=100, deadline=None)

# ---- strategies ---------------------------------------------------------------------------------

_logp = st.floats(-60, 5, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_mass = st.one_of(st.just(0.0), st.floats(1e-3, 1, allow_subnormal=False))


@st.composite
def problems(draw, holes=False):
    """(log_joint (n, k), resp (n, k), sample_weight (n,)); resp has exact zeros.
    With `holes`, log_joint is -inf wherever resp is 0 (but never on a whole row)."""
    n, k = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    log_joint = draw(hnp.arrays(float, (n, k), elements=_logp))
    resp = draw(hnp.arrays(float, (n, k), elements=_mass))
    empty = resp.sum(1) == 0
    resp[empty, 0] = 1.0
    resp /= resp.sum(1, keepdims=True)
    if holes: log_joint = np.where(resp > 0, log_joint, -np.inf)
    weights = draw(hnp.arrays(float, n, elements=st.floats(0, 10, allow_subnormal=False)))
    if weights.sum() == 0: weights[0] = 1.0
    return log_joint, resp, weights


def mean_loglik(log_joint, w=None):
    return np.average(logsumexp(log_joint, axis=1), weights=w)


def posterior(log_joint):
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def close(a, b, rtol=1e-10): return abs(a - b) <= rtol * (1 + abs(b))

# ---- properties ---------------------------------------------------------------------------------

@FAST
@given(problems(), st.booleans())
def test_elbo_below_loglik_and_gap_identity(prob, weighted):
    log_joint, resp, w = prob
    w = w if weighted else None
    ll = mean_loglik(log_joint, w)
    e, g = elbo(log_joint, resp, w), kl_gap(log_joint, resp, w)
    assert e <= ll + 1e-10 * (1 + abs(ll))
    assert g >= 0
    assert close(e + g, ll)
    assert free_energy(log_joint, resp, w) == -e


@FAST
@given(problems(), st.booleans())
def test_equality_at_posterior(prob, weighted):
    log_joint, _, w = prob
    w = w if weighted else None
    post = posterior(log_joint)
    assert kl_gap(log_joint, post, w) <= 1e-12
    assert close(elbo(log_joint, post, w), mean_loglik(log_joint, w), rtol=1e-12)


@FAST
@given(problems(), st.data())
def test_integer_weights_equal_duplicated_rows(prob, data):
    log_joint, resp, _ = prob
    counts = data.draw(hnp.arrays(int, len(resp), elements=st.integers(0, 4)))
    if counts.sum() == 0: counts[0] = 1
    X, R = np.repeat(log_joint, counts, axis=0), np.repeat(resp, counts, axis=0)
    for f in (elbo, free_energy, kl_gap):
        assert close(f(log_joint, resp, counts), f(X, R), rtol=1e-12)


@FAST
@given(problems(), st.booleans(), st.data())
def test_permutation_invariance(prob, weighted, data):
    "Relabelling the components (columns), or reordering rows with their weights, changes nothing."
    log_joint, resp, w = prob
    n, k = resp.shape
    cols = np.asarray(data.draw(st.permutations(range(k))))
    rows = np.asarray(data.draw(st.permutations(range(n))))
    w = w if weighted else None
    for f in (elbo, kl_gap):
        base = f(log_joint, resp, w)
        assert close(f(log_joint[:, cols], resp[:, cols], w), base, rtol=1e-12)
        assert close(f(log_joint[rows], resp[rows], None if w is None else w[rows]), base, rtol=1e-12)


@FAST
@given(problems(holes=True))
def test_minus_inf_where_q_is_zero_is_harmless(prob):
    log_joint, resp, w = prob
    with np.errstate(all='raise', under='ignore'):      # no 0 * inf or log(0) warnings; tiny weights may underflow
        e, g = elbo(log_joint, resp, w), kl_gap(log_joint, resp, w)
    assert np.isfinite(e) and np.isfinite(g) and g >= 0
    assert close(e + g, mean_loglik(log_joint, w))

@FAST
@given(problems(holes=True), st.booleans())
def test_kernels_are_the_public_functions_row_by_row(prob, weighted):
    "The unchecked per-row kernels: ELBO + gap = log p(x) on every row, and their weighted means are elbo and kl_gap."
    log_joint, resp, w = prob
    log_norm = logsumexp(log_joint, axis=1)
    e_rows, g_rows = _elbo_rows(log_joint, resp), _kl_gap_rows(log_joint - log_norm[:, None], resp)
    np.testing.assert_allclose(e_rows + g_rows, log_norm, rtol=1e-10, atol=1e-10)
    w = w if weighted else np.ones(len(resp))
    assert close(np.average(e_rows, weights=w), elbo(log_joint, resp, w if weighted else None), rtol=1e-12)
    assert close(max(np.average(g_rows, weights=w), 0.0), kl_gap(log_joint, resp, w if weighted else None), rtol=1e-12)

# ---- fixed cases --------------------------------------------------------------------------------

def test_mass_on_impossible_z_is_infinite():
    log_joint = np.array([[np.log(0.5), np.log(0.5), -np.inf]])
    resp = np.array([[0.5, 0.4, 0.1]])
    assert elbo(log_joint, resp) == -np.inf and kl_gap(log_joint, resp) == np.inf


def test_large_offsets_do_not_cancel():
    rng = np.random.default_rng(1)
    log_joint = np.log(rng.dirichlet(np.ones(6), size=50)) - 1e8
    assert kl_gap(log_joint, posterior(log_joint)) < 1e-14


@pytest.mark.parametrize('bad, message', [
    (dict(log_joint=np.zeros(3)), 'log_joint must be a non-empty 2-D array'),
    (dict(resp=np.full((2, 2), 0.5)), 'resp must have the shape of log_joint'),
    (dict(log_joint=np.full((2, 3), np.nan)), 'log_joint contains NaN'),
    (dict(resp=np.full((2, 3), 0.5)), 'resp rows must sum to 1'),
    (dict(resp=np.array([[1.5, -0.5, 0.0]] * 2)), 'resp has negative entries'),
    (dict(sample_weight=np.ones(3)), 'sample_weight must have shape (2,)'),
    (dict(sample_weight=np.array([1.0, -1.0])), 'sample_weight has negative entries'),
    (dict(sample_weight=np.zeros(2)), 'sample_weight sums to 0'),
    (dict(log_joint=np.array([[0.0, 0.0, 0.0], [-np.inf] * 3])), 'row 1 is all -inf'),
])
def test_bad_input(bad, message):
    args = dict(log_joint=np.zeros((2, 3)), resp=np.full((2, 3), 1 / 3), sample_weight=None) | bad
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        kl_gap(**args)


@pytest.mark.parametrize('seed', range(10))
def test_source_lines(seed):
    rows = source_lines('(1)', seed)
    assert [r['line'] for r in rows] == list(range(1, 8))
    assert all(r['discrepancy'] < r['tol'] for r in rows), rows

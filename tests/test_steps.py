"""Property and edge-case tests for the E-step (klem_nb.e_step) and the M-step (klem_nb.m_step)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp

from klem_nb.checks import _binomial_log_joint, _maximise_q, source_lines
from klem_nb.e_step import log_responsibilities
from klem_nb.m_step import binomial_success, mixture_weights

SETTINGS = settings(max_examples=60, deadline=None)
shapes = st.tuples(st.integers(1, 12), st.integers(1, 5))
moderate = st.floats(-30, 30, allow_nan=False)


def plain_posterior(lj):
    "Exponentiate and normalise: fine for moderate log joints."
    p = np.exp(lj)
    return p / p.sum(axis=1, keepdims=True), np.log(p.sum(axis=1))


# ---------------------------------------------------------------- log_responsibilities

@SETTINGS
@given(arrays(float, shapes, elements=moderate))
def test_log_resp_matches_plain(lj):
    lr, ln = log_responsibilities(lj)
    post, lpx = plain_posterior(lj)
    np.testing.assert_allclose(np.exp(lr), post, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ln, lpx, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.data(), shapes, st.floats(-1e6, 1e6))
def test_log_resp_rows_sum_to_one_extreme_offsets(data, shape, scale):
    "Log joints spread over tens of nats around offsets up to 1e6 in size: rows still sum to 1, no NaN."
    base = data.draw(arrays(float, shape, elements=moderate))
    offsets = data.draw(arrays(float, (shape[0], 1), elements=st.floats(-abs(scale) - 1, abs(scale) + 1)))
    lr, ln = log_responsibilities(base + offsets)
    assert np.isfinite(lr).all() and np.isfinite(ln).all()
    assert (lr <= 1e-9).all()
    np.testing.assert_allclose(np.exp(lr).sum(axis=1), 1, rtol=1e-8)


@SETTINGS
@given(st.data(), shapes)
def test_log_resp_shift_invariance(data, shape):
    lj = data.draw(arrays(float, shape, elements=moderate))
    c = data.draw(arrays(float, (shape[0],), elements=st.floats(-1e4, 1e4)))
    lr, ln = log_responsibilities(lj)
    lr_s, ln_s = log_responsibilities(lj + c[:, None])
    np.testing.assert_allclose(lr_s, lr, atol=1e-10)
    np.testing.assert_allclose(ln_s, ln + c, atol=1e-10)


@SETTINGS
@given(st.data(), shapes)
def test_log_resp_partial_neg_inf(data, shape):
    "Some -inf entries (but not a whole row) give exact zeros there and a proper posterior elsewhere."
    lj = data.draw(arrays(float, shape, elements=moderate))
    mask = data.draw(arrays(bool, shape))
    mask[np.arange(shape[0]), data.draw(arrays(np.int64, (shape[0],), elements=st.integers(0, shape[1] - 1)))] = False
    lj = np.where(mask, -np.inf, lj)
    lr, ln = log_responsibilities(lj)
    post = np.exp(lr)
    assert (post[mask] == 0).all() and not np.isnan(post).any()
    np.testing.assert_allclose(post.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(ln, logsumexp(lj, axis=1), rtol=1e-12)


def test_log_resp_at_minus_1e4():
    rng = np.random.default_rng(1)
    lj = rng.normal(0, 3, size=(500, 4))
    lr, ln = log_responsibilities(lj - 1e4)
    np.testing.assert_allclose(np.exp(lr), plain_posterior(lj)[0], atol=1e-10)
    np.testing.assert_allclose(ln, plain_posterior(lj)[1] - 1e4, rtol=1e-14)


@pytest.mark.parametrize("bad, match", [
    ([[0., 1.], [-np.inf, -np.inf]], "impossible under every component"),
    ([[0., np.nan]], "NaN"),
    ([[0., np.inf]], r"\+inf"),
    (np.zeros(3), "2D"),
    (np.zeros((2, 2, 2)), "2D"),
    (np.zeros((2, 0)), "at least one column"),
])
def test_log_resp_rejects(bad, match):
    with pytest.raises(ValueError, match=match): log_responsibilities(bad)


# ---------------------------------------------------------------- mixture_weights

@SETTINGS
@given(arrays(float, shapes, elements=st.floats(0, 1e6, allow_subnormal=False)))
def test_mixture_weights_sum_to_one(resp):
    assume(resp.sum() > 0)
    w = mixture_weights(resp)
    assert w.shape == (resp.shape[1],) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(), 1, rtol=1e-12)
    np.testing.assert_allclose(mixture_weights(resp * 7.5), w, rtol=1e-12, atol=1e-300)   # scale-free: only proportions matter


@pytest.mark.parametrize("bad, match", [
    (np.ones(3), "2D"), ([[0.5, -0.5]], "negative"), ([[np.nan, 1.]], "NaN"), (np.zeros((3, 2)), "sums to 0"),
])
def test_mixture_weights_rejects(bad, match):
    with pytest.raises(ValueError, match=match): mixture_weights(bad)


# ---------------------------------------------------------------- binomial_success

@st.composite
def binomial_instance(draw, d=None):
    n, k = draw(st.integers(1, 15)), draw(st.integers(1, 4))
    shape = (n,) if d is None else (n, d)
    trials = draw(arrays(np.int64, shape, elements=st.integers(0, 20)))
    frac = draw(arrays(float, shape, elements=st.floats(0, 1)))
    heads = np.floor(frac * trials)
    resp = draw(arrays(float, (n, k), elements=st.floats(0, 1)))
    return heads, trials, resp


@SETTINGS
@given(st.one_of(binomial_instance(), binomial_instance(d=2)))
def test_binomial_success_in_unit_interval(inst):
    heads, trials, resp = inst
    p = binomial_success(heads, trials, resp, fallback=0.5)
    assert p.shape == (resp.shape[1],) + heads.shape[1:]
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()


@SETTINGS
@given(st.data())
def test_binomial_success_one_hot_is_group_mle(data):
    heads, trials, _ = data.draw(binomial_instance())
    n, k = len(heads), data.draw(st.integers(1, 4))
    z = data.draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    p = binomial_success(heads, trials, np.eye(k)[z], fallback=0.5)
    for j in range(k):
        tj = trials[z == j].sum()
        expected = heads[z == j].sum() / tj if tj > 0 else 0.5   # no trials: the documented fallback
        np.testing.assert_allclose(p[j], expected, rtol=1e-12)


def test_binomial_success_zero_component_raises_without_fallback():
    resp = np.c_[np.ones(4), np.zeros(4)]
    with pytest.raises(ValueError, match=r"component\(s\) \[1\]"):
        binomial_success([1, 2, 3, 4], 5, resp)
    np.testing.assert_allclose(binomial_success([1, 2, 3, 4], 5, resp, fallback=[0.9, 0.3]), [0.5, 0.3])


@pytest.mark.parametrize("seed", range(4))
def test_closed_forms_match_optimiser_with_sample_weights(seed):
    "(M.6) and (M.7) with resp times sample weights and varying trials are the argmax of the weighted Q."
    rng = np.random.default_rng(seed)
    n, k = 50, 3
    trials = rng.integers(1, 20, size=n)
    heads = rng.binomial(trials, rng.uniform(0.1, 0.9, size=k)[rng.integers(k, size=n)])
    lj = _binomial_log_joint(heads, trials, rng.dirichlet(np.ones(k)), rng.uniform(0.2, 0.8, size=k))
    resp = np.exp(log_responsibilities(lj)[0]) * rng.uniform(0, 3, size=n)[:, None]
    w_opt, p_opt = _maximise_q(heads, trials, resp, np.zeros(k), np.zeros(k))
    np.testing.assert_allclose(mixture_weights(resp), w_opt, atol=1e-6)
    np.testing.assert_allclose(binomial_success(heads, trials, resp), p_opt, atol=1e-6)


@pytest.mark.parametrize("args, kwargs, match", [
    (([-1, 2], 5, np.ones((2, 1))), {}, "heads has negative"),
    (([6, 2], 5, np.ones((2, 1))), {}, "heads exceed trials"),
    (([1, 2], [5, 5, 5], np.ones((2, 1))), {}, "trials must be a scalar"),
    ((np.ones((2, 2, 2)), 5, np.ones((2, 1))), {}, "heads must have shape"),
    (([1, 2], 5, np.ones((3, 1))), {}, "resp has 3 rows"),
    (([1, 2], 5, np.ones(2)), {}, "resp must be 2D"),
    (([1, 2], 5, -np.ones((2, 1))), {}, "resp has negative"),
    (([1, np.nan], 5, np.ones((2, 1))), {}, "heads contains NaN"),
    (([1, 2], 5, np.ones((2, 2))), dict(fallback=[0.1, 0.2, 0.3]), "fallback must be"),
    (([1, 2], 5, np.ones((2, 2))), dict(fallback=1.5), "fallback must lie"),
])
def test_binomial_success_rejects(args, kwargs, match):
    with pytest.raises(ValueError, match=match): binomial_success(*args, **kwargs)


# ---------------------------------------------------------------- source lines

@pytest.mark.parametrize("seed", range(5))
def test_source_lines_hold_for_other_seeds(seed):
    rows = source_lines('E-step', seed) + source_lines('M-step', seed)
    assert [r['block'] for r in rows] == ['E-step'] * 5 + ['M-step'] * 4
    for r in rows:
        assert set(r) == {'block', 'line', 'statement', 'check', 'discrepancy', 'tol'}
        assert r['discrepancy'] < r['tol'], r

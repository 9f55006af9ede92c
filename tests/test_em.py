"""Tests for the EM engine klem_nb.em (nbs/05_em.ipynb holds the worked example and the figures)."""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp, xlog1py, xlogy

from klem_nb.e_step import posterior
from klem_nb.em import (LEDGER_DTYPE, EMModel, EMResult, EStep, FreeEnergyIncreaseError, LatentClassModel, Ledger,
                        e_pass, em)
from klem_nb.free_energy import free_energy, kl_gap

sys.path.insert(0, os.path.dirname(__file__))
from models import BinomialMixtureModel  # noqa: E402  (tests/models.py: the notebook's model, with input checks)

SEEDS = range(8)


# ---- random binomial mixtures and an independent plain EM loop ----------------------------------

def instance(seed):
    "A random binomial mixture problem: counts X (n, d), trials m (d,), starting θ (k, d) and π (k,)."
    rng = np.random.default_rng(seed)
    k, d, n = int(rng.integers(2, 5)), int(rng.integers(1, 4)), int(rng.integers(30, 300))
    m = rng.integers(1, 13, size=d)
    theta_true = rng.uniform(0.05, 0.95, size=(k, d))
    z = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 2.0)))
    X = rng.binomial(m, theta_true[z]).astype(float)
    theta0 = rng.uniform(0.2, 0.8, size=(k, d))
    weights0 = rng.dirichlet(np.full(k, 5.0))
    return X, m, theta0, weights0


def plain_em(X, m, theta, weights, n_iter, fixed_weights=False, sample_weight=None):
    "EM written out directly, with no engine: returns θ, π and the lower bound of every iteration."
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    theta, weights, bounds = theta.copy(), weights.copy(), []
    log_binom = (gammaln(m + 1) - gammaln(X + 1) - gammaln(m - X + 1)).sum(1)
    for _ in range(n_iter):
        lj = np.stack([np.log(weights[j]) + log_binom + (xlogy(X, theta[j]) + xlog1py(m - X, -theta[j])).sum(1)
                       for j in range(len(weights))], axis=1)
        log_px = logsumexp(lj, axis=1)
        bounds.append(np.sum(w * log_px) / np.sum(w))
        r = np.exp(lj - log_px[:, None]) * w[:, None]
        nk = r.sum(0)
        theta = (r.T @ X) / (nk[:, None] * m)
        if not fixed_weights: weights = nk / nk.sum()
    return theta, weights, np.array(bounds)


def fit(seed, **kw):
    X, m, theta0, weights0 = instance(seed)
    fixed = kw.pop('fixed_weights', False)
    model = BinomialMixtureModel(theta0, n_trials=m, weights=weights0, fixed_weights=fixed)
    return model, em(model, model.check_X(X), **kw), X


# ---- the engine against the plain loop ----------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
def test_engine_matches_plain_loop(seed):
    X, m, theta0, weights0 = instance(seed)
    fixed = bool(seed % 2)
    model = BinomialMixtureModel(theta0, n_trials=m, weights=weights0, fixed_weights=fixed)
    res = em(model, model.check_X(X), tol=0, max_iter=30)
    theta, weights, bounds = plain_em(X, m, theta0, weights0, 30, fixed_weights=fixed)
    np.testing.assert_allclose(model.success, theta, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(model.weights, weights, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(res.lower_bounds, bounds, rtol=1e-12)
    if fixed: np.testing.assert_array_equal(model.weights, weights0)


def test_two_coins_published_numbers():
    "Do & Batzoglou (2008): θ after one iteration ≈ (0.71, 0.58), after ten ≈ (0.80, 0.52)."
    model = BinomialMixtureModel([0.6, 0.5], n_trials=10, fixed_weights=True)
    X = model.check_X([5, 9, 8, 4, 7])
    em(model, X, tol=0, max_iter=1)
    np.testing.assert_allclose(np.round(model.success, 2), [0.71, 0.58])
    em(model, X, tol=0, max_iter=9)
    np.testing.assert_allclose(np.round(model.success, 2), [0.80, 0.52])


# ---- blocks and weights -------------------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS[:4])
def test_block_size_invariance(seed):
    ref_model, ref, X = fit(seed, tol=1e-9, max_iter=40)
    for block_size in (7 + seed, 64, len(X) - 1, len(X), 10 * len(X)):
        model, res, _ = fit(seed, tol=1e-9, max_iter=40, block_size=block_size)
        assert res.n_iter == ref.n_iter and res.converged == ref.converged
        np.testing.assert_allclose(model.success, ref_model.success, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res.lower_bounds, ref.lower_bounds, rtol=1e-13)
        for f in ('log_likelihood', 'free_energy', 'kl_gap'):
            np.testing.assert_allclose(res.ledger[f], ref.ledger[f], rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(res.ledger.step, ref.ledger.step)
        np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=1e-13)
        Xc = model.check_X(X)
        np.testing.assert_allclose(posterior(model.log_joint(Xc))[0], posterior(ref_model.log_joint(Xc))[0],
                                   rtol=1e-11, atol=1e-11)


def test_block_size_one_on_the_two_coins():
    X = np.array([5., 9, 8, 4, 7])
    ma, mb = BinomialMixtureModel([0.6, 0.5], n_trials=10), BinomialMixtureModel([0.6, 0.5], n_trials=10)
    ra, rb = em(ma, X, tol=0, max_iter=20), em(mb, X, tol=0, max_iter=20, block_size=1)
    np.testing.assert_allclose(mb.success, ma.success, rtol=1e-12)
    np.testing.assert_allclose(rb.ledger.free_energy, ra.ledger.free_energy, rtol=1e-12)
    np.testing.assert_allclose(rb.log_likelihood, ra.log_likelihood, rtol=1e-13)
    np.testing.assert_allclose(posterior(mb.log_joint(X))[0], posterior(ma.log_joint(X))[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('seed', SEEDS[:4])
def test_integer_weights_equal_duplicated_rows(seed):
    X, m, theta0, weights0 = instance(seed)
    counts = np.random.default_rng(100 + seed).integers(0, 4, size=len(X))
    counts[0] = 1
    mw = BinomialMixtureModel(theta0, n_trials=m, weights=weights0)
    rw = em(mw, X, sample_weight=counts, tol=1e-10, max_iter=60, block_size=17)
    md = BinomialMixtureModel(theta0, n_trials=m, weights=weights0)
    rd = em(md, np.repeat(X, counts, axis=0), tol=1e-10, max_iter=60)
    assert rw.n_iter == rd.n_iter
    np.testing.assert_allclose(mw.success, md.success, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mw.weights, md.weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rw.lower_bounds, rd.lower_bounds, rtol=1e-12)
    for f in ('log_likelihood', 'free_energy', 'kl_gap'):
        np.testing.assert_allclose(rw.ledger[f], rd.ledger[f], rtol=1e-10, atol=1e-12)
    # and weighted rows match the plain loop with the same weights
    theta, weights, bounds = plain_em(X, m, theta0, weights0, rw.n_iter, sample_weight=counts)
    np.testing.assert_allclose(rw.lower_bounds, bounds, rtol=1e-12)


def test_sample_weight_reaches_sufficient_stats():
    seen = []
    class Spy(BinomialMixtureModel):
        def sufficient_stats(self, X, wresp):
            seen.append(wresp.sum(1).copy())
            return super().sufficient_stats(X, wresp)
    w = np.array([0., 1., 2.5, 3., 0.5])
    em(Spy([0.6, 0.5], n_trials=10), np.array([5., 9, 8, 4, 7]), sample_weight=w, max_iter=2, tol=0)
    for s in seen: np.testing.assert_allclose(s, w, rtol=1e-14)


# ---- the ledger ---------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
def test_ledger_is_monotone(seed):
    _, res, _ = fit(seed, tol=1e-8, max_iter=200, strict=True)
    led = res.ledger
    assert isinstance(led, Ledger) and led.dtype.names == LEDGER_DTYPE.names
    assert len(led) == 2 * res.n_iter
    np.testing.assert_array_equal(led.iteration, np.repeat(np.arange(1, res.n_iter + 1), 2))
    np.testing.assert_array_equal(led.step, ['E', 'M'] * res.n_iter)
    F, L, gap = led.free_energy, led.log_likelihood, led.kl_gap
    assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
    assert np.all(np.diff(L) >= -1e-12 * np.abs(L[:-1]))
    e = led.step == 'E'
    np.testing.assert_allclose(gap[e], 0, atol=1e-12)
    np.testing.assert_allclose(F[e], -L[e], rtol=1e-12)
    assert np.all(gap[~e] >= -1e-12)
    np.testing.assert_allclose(F, gap - L, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(res.lower_bounds, L[e])
    assert L[-1] == res.log_likelihood   # the last M-row's L is the final E-step's


class Remembering(BinomialMixtureModel):
    "Keeps every log_joint it returns and every wresp it receives, block by block."
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_joints, self.wresps = [], []

    def log_joint(self, X):
        self.log_joints.append(super().log_joint(X))
        return self.log_joints[-1]

    def sufficient_stats(self, X, wresp):
        self.wresps.append(wresp)
        return super().sufficient_stats(X, wresp)


@pytest.mark.parametrize('seed,block_size,weighted', [(0, None, False), (1, None, True), (2, 23, False), (3, 17, True)])
def test_ledger_equals_public_functions(seed, block_size, weighted):
    "The engine's unchecked kernels give what the validating free_energy and kl_gap give, to 1e-12."
    X, m, theta0, weights0 = instance(seed)
    w = np.random.default_rng(50 + seed).uniform(0.2, 3.0, size=len(X)) if weighted else None
    model = Remembering(theta0, n_trials=m, weights=weights0)
    res = em(model, model.check_X(X), sample_weight=w, tol=1e-8, max_iter=40, block_size=block_size)
    n_blocks = len(model.log_joints) // (res.n_iter + 1)
    tables = [np.vstack(model.log_joints[i:i + n_blocks]) for i in range(0, len(model.log_joints), n_blocks)]
    resps = [np.vstack(model.wresps[i:i + n_blocks]) for i in range(0, len(model.wresps), n_blocks)]
    if weighted: resps = [r / w[:, None] for r in resps]
    expected = [(free_energy(lj, q, w), kl_gap(lj, q, w))
                for t, q in enumerate(resps) for lj in (tables[t], tables[t + 1])]
    np.testing.assert_allclose(np.c_[res.ledger.free_energy, res.ledger.kl_gap], expected, rtol=1e-12, atol=1e-12)


def test_ledger_conversions():
    _, res, _ = fit(0, tol=1e-4)
    led = res.ledger
    cols = led.columns()
    assert list(cols) == list(LEDGER_DTYPE.names) and all(len(v) == len(led) for v in cols.values())
    recs = led.records()
    assert recs[0]['step'] == 'E' and recs[0]['iteration'] == 1 and isinstance(recs[0]['free_energy'], float)
    assert type(led[led.step == 'M']) is Ledger and len(led[led.step == 'M']) == res.n_iter
    assert 'Ledger with' in repr(led) and '| iteration |' in led._repr_markdown_()
    pd = pytest.importorskip('pandas')
    df = pd.DataFrame(led)
    assert list(df.columns) == list(LEDGER_DTYPE.names) and len(df) == len(led)


def test_callback_gets_every_row_in_order():
    rows = []
    _, res, _ = fit(1, tol=1e-6, callback=rows.append)
    assert len(rows) == 2 * res.n_iter
    assert rows == res.ledger.records()


def test_no_extra_log_joint_evaluations():
    "log_joint once per E-pass (n_iter + 1 of them; blocks multiply it), as in scikit-learn: the ledger costs none."
    calls = []
    class Counting(BinomialMixtureModel):
        def log_joint(self, X):
            calls.append(len(X))
            return super().log_joint(X)
    X = np.array([5., 9, 8, 4, 7])
    res = em(Counting([0.6, 0.5], n_trials=10), X, tol=0, max_iter=7)
    assert len(calls) == res.n_iter + 1 == 8
    calls.clear()
    em(Counting([0.6, 0.5], n_trials=10), X, tol=0, max_iter=7, block_size=2)
    assert calls == [2, 2, 1] * 8


# ---- strict mode --------------------------------------------------------------------------------

class WrongWay(BinomialMixtureModel):
    "An M-step that steps away from the closed-form answer: F(q, θ) rises."
    def m_step(self, stats):
        old = self.success.copy()
        super().m_step(stats)
        self.success = np.clip(2 * old - self.success, 0.01, 0.99)


def test_strict_mode_raises_on_a_bad_m_step():
    X = np.array([5., 9, 8, 4, 7])
    with pytest.raises(FreeEnergyIncreaseError, match='M-step of iteration 1') as info:
        em(WrongWay([0.6, 0.5], n_trials=10, fixed_weights=True), X, strict=True)
    err = info.value
    assert isinstance(err, ArithmeticError)
    assert (err.iteration, err.step) == (1, 'M') and err.after > err.before
    assert err.ledger.step.tolist() == ['E', 'M']
    res = em(WrongWay([0.6, 0.5], n_trials=10, fixed_weights=True), X, max_iter=3, tol=0)  # not strict: runs
    assert np.all(np.diff(res.ledger.free_energy)[::2] > 0)


# ---- tol, max_iter and warm starts --------------------------------------------------------------

@pytest.mark.parametrize('tol', [1e-1, 1e-3, 1e-6])
def test_tol_and_max_iter_semantics(tol):
    for seed in SEEDS[:4]:
        _, res, _ = fit(seed, tol=tol, max_iter=500)
        lb = res.lower_bounds
        assert len(lb) == res.n_iter and len(res.ledger) == 2 * res.n_iter and res.lower_bound == lb[-1]
        assert res.converged and res.n_iter >= 2  # a cold start never stops at iteration 1
        assert abs(lb[-1] - lb[-2]) < tol and np.all(np.abs(np.diff(lb[:-1])) >= tol)
        _, short, _ = fit(seed, tol=tol, max_iter=res.n_iter - 1)
        assert not short.converged and short.n_iter == res.n_iter - 1
        np.testing.assert_array_equal(short.lower_bounds, lb[:-1])


def test_max_iter_zero_only_runs_the_final_e_step():
    model, res, X = fit(2, max_iter=0)
    assert (res.n_iter, res.converged, len(res.lower_bounds), len(res.ledger)) == (0, False, 0, 0)
    assert res.lower_bound == -np.inf and np.isfinite(res.log_likelihood)
    np.testing.assert_allclose(res.log_likelihood, posterior(model.log_joint(model.check_X(X)))[1].mean(), rtol=1e-13)


def test_warm_start_continues_the_same_run():
    model, ref, X = fit(3, tol=0, max_iter=12)
    X0, m, theta0, weights0 = instance(3)
    model2 = BinomialMixtureModel(theta0, n_trials=m, weights=weights0)
    r1 = em(model2, X0, tol=0, max_iter=5)
    r2 = em(model2, X0, tol=0, max_iter=7, lower_bound=r1.lower_bound)
    np.testing.assert_allclose(model2.success, model.success, rtol=1e-13)
    np.testing.assert_allclose(np.r_[r1.lower_bounds, r2.lower_bounds], ref.lower_bounds, rtol=1e-14)
    # a warm start at the converged value stops after one iteration
    r3 = em(model2, X0, tol=1e-3, lower_bound=r2.lower_bound + 1e-4)
    assert r3.converged and r3.n_iter == 1


# ---- argument checks ----------------------------------------------------------------------------

def test_bad_arguments():
    model, X = BinomialMixtureModel([0.6, 0.5], n_trials=10), np.array([5., 9, 8, 4, 7])
    with pytest.raises(TypeError, match='e_step'): em(object(), X)
    class NoEStep:
        def m_step(self, stats): pass
        def expected_log_joint(self, stats): return 0.0
    with pytest.raises(TypeError, match='e_step'): em(NoEStep(), X)
    for kw, msg in [(dict(tol=-1), 'tol'), (dict(max_iter=-1), 'max_iter'), (dict(max_iter=1.5), 'max_iter'),
                    (dict(block_size=0), 'block_size'), (dict(lower_bound=np.nan), 'lower_bound'),
                    (dict(sample_weight=np.ones(3)), 'sample_weight'), (dict(sample_weight=-np.ones(5)), 'sample_weight'),
                    (dict(sample_weight=[1, 1, np.nan, 1, 1]), 'sample_weight'), (dict(sample_weight=np.zeros(5)), 'sums to 0'),
                    (dict(callback=3), 'callback')]:
        with pytest.raises(ValueError, match=msg): em(model, X, **kw)
    with pytest.raises(ValueError, match='no rows'): em(model, X[:0])
    with pytest.raises(NotImplementedError, match='e_step'): em(EMModel(), X)
    with pytest.raises(NotImplementedError, match='log_joint'): em(LatentClassModel(), X)


def test_result_repr_and_types():
    _, res, _ = fit(4, tol=1e-3)
    assert isinstance(res, EMResult) and isinstance(res.converged, bool) and isinstance(res.n_iter, int)
    assert isinstance(res.lower_bound, float) and res.lower_bounds.dtype == float
    assert repr(res).startswith('EMResult(converged=True')


# ---- scikit-learn's loop, reproduced ------------------------------------------------------------

class DiagGaussian(LatentClassModel):
    "scikit-learn's diagonal-covariance Gaussian mixture, written as an EMModel (its diag statistics are additive)."
    def __init__(self, weights, means, precisions, reg_covar=1e-6):
        self.weights, self.means, self.prec_chol, self.reg_covar = weights, means, np.sqrt(precisions), reg_covar

    def log_joint(self, X):
        d = X.shape[1]
        precisions = self.prec_chol ** 2
        log_prob = (np.sum(self.means ** 2 * precisions, axis=1) - 2.0 * (X @ (self.means * precisions).T)
                    + (X ** 2 @ precisions.T))
        log_det = np.sum(np.log(self.prec_chol), axis=1)
        return -0.5 * (d * np.log(2 * np.pi) + log_prob) + log_det + np.log(self.weights)

    def sufficient_stats(self, X, wresp):
        return dict(nk=wresp.sum(axis=0), sx=wresp.T @ X, sxx=wresp.T @ (X * X))

    def m_step(self, stats):
        nk = stats['nk'] + 10 * np.finfo(float).eps
        self.means = stats['sx'] / nk[:, None]
        cov = stats['sxx'] / nk[:, None] - self.means ** 2 + self.reg_covar
        self.weights = nk / nk.sum()
        self.prec_chol = 1.0 / np.sqrt(cov)

    def expected_log_joint(self, stats):
        "Σ_j N_j log π_j + Σ_j E_q log N(x; μ_j, diag σ_j²), from nk, Σ x and Σ x²."
        nk, sx, sxx = stats['nk'], stats['sx'], stats['sxx']
        prec, mu = self.prec_chol ** 2, self.means
        sq = sxx - 2 * mu * sx + nk[:, None] * mu ** 2      # Σ_i q_ij (x_il - μ_jl)²
        per_dim = nk[:, None] * (np.log(self.prec_chol) - 0.5 * np.log(2 * np.pi)) - 0.5 * prec * sq
        return float(xlogy(nk, self.weights).sum() + per_dim.sum())


@pytest.mark.parametrize('seed,tol,max_iter', [(0, 1e-3, 100), (1, 1e-6, 100), (2, 1e-8, 15), (3, 1e-4, 100)])
def test_matches_sklearn_gaussian_mixture_loop(seed, tol, max_iter):
    "Same n_iter_, converged_, lower_bound_, lower_bounds_, parameters and fit_predict labels as scikit-learn."
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    rng = np.random.default_rng(seed)
    k, d, n = 3, 2, 400
    X = rng.normal(size=(n, d)) + rng.normal(0, 2.5, size=(k, d))[rng.integers(k, size=n)]
    w0, mu0, prec0 = rng.dirichlet(np.full(k, 5.0)), X[rng.choice(n, k, replace=False)], rng.uniform(0.3, 1.5, size=(k, d))
    gm = GaussianMixture(k, covariance_type='diag', tol=tol, max_iter=max_iter, weights_init=w0, means_init=mu0,
                         precisions_init=prec0, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        labels = gm.fit_predict(X)
    model = DiagGaussian(w0.copy(), mu0.copy(), prec0.copy())
    res = em(model, X, tol=tol, max_iter=max_iter)
    assert (res.n_iter, res.converged) == (gm.n_iter_, gm.converged_)
    np.testing.assert_allclose(res.lower_bounds, gm.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(res.lower_bound, gm.lower_bound_, rtol=1e-12)
    np.testing.assert_allclose(model.means, gm.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.weights, gm.weights_, rtol=1e-10)
    np.testing.assert_allclose(model.prec_chol, gm.precisions_cholesky_, rtol=1e-10)
    np.testing.assert_array_equal(posterior(model.log_joint(X))[0].argmax(axis=1), labels)
    np.testing.assert_allclose(res.log_likelihood, gm.score(X), rtol=1e-12)
    # the measured ledger: E-rows have no gap, F never rises, M-rows agree with the public free energy
    led = res.ledger
    e = led.step == 'E'
    np.testing.assert_allclose(led.kl_gap[e], 0, atol=1e-12)
    assert np.all(np.diff(led.free_energy) <= 1e-10 * np.abs(led.free_energy[:-1]))


# ---- the ledger checks can fail (mutations) -----------------------------------------------------

class NotPosterior(BinomialMixtureModel):
    "An e_step whose q is NOT the posterior (half the posterior, half uniform), with the true log-likelihood."
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_joints, self.qs = [], []

    def e_step(self, X, sample_weight=None, stats=True):
        lj = self.log_joint(X)
        resp, log_norm, _ = posterior(lj)
        q = 0.5 * resp + 0.5 / lj.shape[1]
        self.log_joints.append(lj)
        self.qs.append(q)
        w = np.ones(len(q)) if sample_weight is None else sample_weight
        return EStep(float(w.sum()), float(w @ log_norm), float(w @ (q * lj).sum(1)), float(w @ xlogy(q, q).sum(1)),
                     self.sufficient_stats(X, q * w[:, None]) if stats else None)


@pytest.mark.parametrize('weighted', [False, True])
def test_ledger_sees_an_e_step_that_is_not_the_posterior(weighted):
    X, m, theta0, weights0 = instance(5)
    w = np.random.default_rng(7).uniform(0.2, 3.0, size=len(X)) if weighted else None
    model = NotPosterior(theta0, n_trials=m, weights=weights0)
    res = em(model, model.check_X(X), sample_weight=w, tol=0, max_iter=6)
    led = res.ledger
    e = led.step == 'E'
    assert np.all(led.kl_gap[e] > 1e-4)                  # the E-row gap is measured, not assumed to be 0
    assert np.all(led.kl_gap[e] > 1e8 * 1e-12)
    # and the ledger still equals the public functions evaluated on the q the model really used
    qs, tables = model.qs[:res.n_iter], model.log_joints
    expected = [(free_energy(lj, q, w), kl_gap(lj, q, w)) for t, q in enumerate(qs) for lj in (tables[t], tables[t + 1])]
    np.testing.assert_allclose(np.c_[led.free_energy, led.kl_gap], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(led.kl_gap[e], [kl_gap(tables[t], qs[t], w) for t in range(res.n_iter)], rtol=1e-10)


class OffsetELJ(Remembering):
    "An expected_log_joint that is off by a constant: only the M-rows use it."
    offset = -25.0   # lowers E log p, so it raises the M-row F by 25 / W

    def expected_log_joint(self, stats):
        return super().expected_log_joint(stats) + self.offset


def test_ledger_sees_a_wrong_expected_log_joint():
    X, m, theta0, weights0 = instance(2)
    model = OffsetELJ(theta0, n_trials=m, weights=weights0)
    res = em(model, model.check_X(X), tol=0, max_iter=5)
    tables, resps = model.log_joints, model.wresps
    public = np.array([[free_energy(lj, q), kl_gap(lj, q)] for t, q in enumerate(resps)
                       for lj in (tables[t], tables[t + 1])])
    led, e = res.ledger, res.ledger.step == 'E'
    np.testing.assert_allclose(led.free_energy[e], public[e, 0], rtol=1e-12, atol=1e-12)   # E-rows do not use it
    np.testing.assert_allclose(led.free_energy[~e] - public[~e, 0], -OffsetELJ.offset / len(X), rtol=1e-9)
    assert np.all(np.abs(led.free_energy[~e] - public[~e, 0]) > 1e6 * 1e-12)
    with pytest.raises(FreeEnergyIncreaseError, match='M-step of iteration 1') as info:
        em(OffsetELJ(theta0, n_trials=m, weights=weights0), model.check_X(X), strict=True)
    assert info.value.step == 'M' and info.value.after > info.value.before
    # the other sign lowers the M-row F: the public recomputation sees it, and strict mode catches it one
    # half-step later, when the next (correct) E-row has to rise back up to the true F
    class Lower(OffsetELJ): offset = +25.0
    low = Lower(theta0, n_trials=m, weights=weights0)
    r = em(low, low.check_X(X), tol=0, max_iter=3)
    mrows = r.ledger.step == 'M'
    pub = [free_energy(low.log_joints[t + 1], q) for t, q in enumerate(low.wresps)]
    assert np.all(r.ledger.free_energy[mrows] < np.array(pub) - 1e-3)
    with pytest.raises(FreeEnergyIncreaseError, match='E-step of iteration 2'):
        em(Lower(theta0, n_trials=m, weights=weights0), low.check_X(X), tol=0, max_iter=3, strict=True)


# ---- re-entrancy and additivity of e_step -------------------------------------------------------

def _fitted_blocks(n_blocks=8):
    rng = np.random.default_rng(11)
    theta = np.array([[0.2, 0.7, 0.5], [0.8, 0.3, 0.5], [0.5, 0.5, 0.9]])
    m = np.array([10, 6, 12])
    z = rng.integers(3, size=4000)
    X = rng.binomial(m, theta[z]).astype(float)
    model = BinomialMixtureModel(rng.uniform(0.3, 0.7, size=(3, 3)), n_trials=m)
    em(model, model.check_X(X), tol=1e-6, max_iter=50)
    edges = np.r_[0, np.sort(rng.choice(np.arange(1, len(X)), n_blocks - 1, replace=False)), len(X)]
    w = rng.uniform(0.1, 2.0, size=len(X))
    return model, X, w, [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _same(a, b):
    assert (a.weight, a.log_likelihood, a.expected_log_joint, a.neg_entropy) == \
           (b.weight, b.log_likelihood, b.expected_log_joint, b.neg_entropy)
    assert sorted(a.stats) == sorted(b.stats)
    for key in a.stats: np.testing.assert_array_equal(a.stats[key], b.stats[key])


@pytest.mark.parametrize('weighted', [False, True])
def test_e_step_is_reentrant(weighted):
    model, X, w, blocks = _fitted_blocks()
    args = [(X[a:b], w[a:b] if weighted else None) for a, b in blocks]
    serial = [model.e_step(Xb, wb) for Xb, wb in args]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(25):
            for got, ref in zip(pool.map(lambda xw: model.e_step(*xw), args), serial): _same(got, ref)


@pytest.mark.parametrize('weighted', [False, True])
def test_e_step_blocks_add_up(weighted):
    model, X, w, blocks = _fitted_blocks()
    ww = w if weighted else None
    parts = [model.e_step(X[a:b], None if ww is None else ww[a:b]) for a, b in blocks]
    total = parts[0]
    for p in parts[1:]: total = total + p
    whole = model.e_step(X, ww)
    for f in ('weight', 'log_likelihood', 'expected_log_joint', 'neg_entropy'):
        np.testing.assert_allclose(getattr(total, f), getattr(whole, f), rtol=1e-12)
    assert sorted(total.stats) == sorted(whole.stats)
    for key in whole.stats: np.testing.assert_allclose(total.stats[key], whole.stats[key], rtol=1e-12)
    _same(e_pass(model, X, ww, block_size=len(X)), whole)
    assert model.e_step(X, ww, stats=False).stats is None
    assert 'EStep(weight=' in repr(whole)


def test_binomial_test_model_checks_its_inputs():
    for args, kw in [(([1.5, 0.5],), {}), (([[[0.5]]],), {}), (([0.6, 0.5],), dict(n_trials=0)),
                     (([0.6, 0.5],), dict(n_trials=2.5)), (([0.6, 0.5],), dict(weights=[0.2, 0.2])),
                     (([0.6, 0.5],), dict(weights=[1.0, 0.0])), (([[0.6, 0.5]],), dict(n_trials=[3, 4, 5]))]:
        with pytest.raises(ValueError): BinomialMixtureModel(*args, **kw)
    model = BinomialMixtureModel([0.6, 0.5], n_trials=10)
    for bad in ([11], [-1], [2.5], [np.nan], [[1, 2]]):
        with pytest.raises(ValueError, match='X must'): model.check_X(bad)
    assert model.check_X([5, 9]).shape == (2, 1)

"""Tests for klem_nb.discrete: BernoulliMixture and PoissonMixture (nbs/12_discrete.ipynb has the derivation)."""
import inspect
import pickle
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize
from scipy.special import expit, gammaln, log_expit, log_softmax, logsumexp, softmax, xlog1py, xlogy
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Binarizer, KBinsDiscretizer
from sklearn.utils.estimator_checks import parametrize_with_checks

from klem_nb.datasets import load_deaths
from klem_nb.em import em
from klem_nb.gmm import GaussianMixture
from klem_nb.base import BaseMixture, MixtureEMModel
from klem_nb.discrete import (BernoulliMixture, PoissonMixture, bernoulli_log_prob, check_binary, check_counts,
                              mean_m_step, mean_stats, poisson_log_prob)

SEEDS = range(6)
FAMILIES = ('bernoulli', 'poisson')
EST = {'bernoulli': BernoulliMixture, 'poisson': PoissonMixture}
EPS10 = 10 * np.finfo(float).eps


# ---- data and an independent plain EM loop ------------------------------------------------------

def mixture_data(family, seed, n=None, k=None, d=None):
    "Rows drawn from a random k-component mixture of the family: X (n, d) float, true weights, true means."
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(80, 300)); k = k or int(rng.integers(2, 4)); d = d or int(rng.integers(2, 7))
    weights = rng.dirichlet(np.full(k, 3.0))
    z = rng.choice(k, size=n, p=weights)
    if family == 'bernoulli':
        means = rng.uniform(0.05, 0.95, size=(k, d))
        X = rng.binomial(1, means[z])
    else:
        means = rng.uniform(0.3, 8.0, size=(k, d))
        X = rng.poisson(means[z])
    return X.astype(float), weights, means


def plain_log_prob(family, X, means):
    "log p(x_i | z=j) straight from scipy.stats, summed over features, shape (n, k)."
    dist = stats.bernoulli if family == 'bernoulli' else stats.poisson
    with np.errstate(divide='ignore'):
        return dist.logpmf(X[:, None, :], means[None]).sum(-1)


def plain_em(family, X, weights, means, n_iter, sample_weight=None):
    "EM written out with numpy and scipy.stats only: returns weights, means and the lower bound of every iteration."
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    bounds = []
    for _ in range(n_iter):
        log_joint = np.log(weights) + plain_log_prob(family, X, means)
        log_px = logsumexp(log_joint, axis=1)
        bounds.append(w @ log_px / w.sum())
        r = np.exp(log_joint - log_px[:, None]) * w[:, None]
        nk = r.sum(0) + EPS10
        weights, means = nk / nk.sum(), (r.T @ X) / nk[:, None]
        if family == 'bernoulli': means = np.minimum(means, 1.0)
    return weights, means, np.array(bounds)


def start_from(est, X, weights, means, sample_weight=None):
    "Put `est` (warm_start=True) at the given θ_0 through a max_iter=0 fit and then the fitted attributes."
    est.set_params(warm_start=True, max_iter=0).fit(X, sample_weight=sample_weight)
    est.weights_, est.means_ = np.array(weights, float), np.array(means, float)
    return est


# ---- the component densities --------------------------------------------------------------------

@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('seed', SEEDS)
def test_log_prob_matches_scipy(family, seed):
    X, _, means = mixture_data(family, seed)
    rng = np.random.default_rng(seed + 100)
    means = means.copy()
    edge = rng.random(means.shape) < 0.15                     # put some parameters on the boundary
    means[edge] = 0.0 if family == 'poisson' else rng.integers(0, 2, size=edge.sum())
    fn = bernoulli_log_prob if family == 'bernoulli' else poisson_log_prob
    ours, ref = fn(X, means), plain_log_prob(family, X, means)
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-12, atol=1e-12)
    assert not np.isnan(ours).any()


def test_log_prob_zero_log_zero():
    test = np.array([[0.], [1.]])
    np.testing.assert_array_equal(bernoulli_log_prob(test, [[0.], [1.]]), [[0, -np.inf], [-np.inf, 0]])
    np.testing.assert_array_equal(poisson_log_prob([[0.], [2.]], [[0.]]), [[0], [-np.inf]])
    np.testing.assert_array_equal(poisson_log_prob(np.zeros((3, 4)), np.zeros((2, 4))), np.zeros((3, 2)))


# ---- the M-step ---------------------------------------------------------------------------------

def argmax_Q(family, X, wr):
    "BFGS on -Q(θ) = -Σ_i Σ_j wr_ij [log π_j + log p(x_i | z=j)], written from scipy.stats; returns (π, means)."
    k, d = wr.shape[1], X.shape[1]
    rng = np.random.default_rng(0)
    def neg_q(ab):
        a, b = ab[:k], ab[k:].reshape(k, d)
        means = expit(b) if family == 'bernoulli' else np.exp(b)
        if family == 'bernoulli':
            log_p = (X @ log_expit(b).T + (1 - X) @ log_expit(-b).T)
        else:
            log_p = X @ b.T - means.sum(1) - gammaln(X + 1).sum(1)[:, None]
        val = np.sum(wr * (log_softmax(a) + log_p))
        nk, sx = wr.sum(0), wr.T @ X
        grad = np.concatenate([nk - softmax(a) * nk.sum(), (sx - nk[:, None] * means).ravel()])
        return -val / nk.sum(), -grad / nk.sum()
    res = minimize(neg_q, rng.normal(size=k + k * d), jac=True, method='BFGS', options=dict(gtol=1e-11, maxiter=20_000))
    b = res.x[k:].reshape(k, d)
    return softmax(res.x[:k]), (expit(b) if family == 'bernoulli' else np.exp(b))


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('seed', SEEDS)
def test_m_step_closed_form_is_the_argmax(family, seed):
    X, _, _ = mixture_data(family, seed, n=60)
    rng = np.random.default_rng(seed)
    k = 3
    wr = rng.dirichlet(np.ones(k), size=len(X)) * rng.uniform(0.2, 3.0, size=len(X))[:, None]
    # the optimiser's objective equals Q written from scipy.stats at a random θ
    pi, mu = rng.dirichlet(np.ones(k)), (rng.uniform(0.1, 0.9, (k, X.shape[1])) if family == 'bernoulli'
                                          else rng.uniform(0.5, 5, (k, X.shape[1])))
    q_ref = np.sum(wr * (np.log(pi) + plain_log_prob(family, X, mu)))
    fn = bernoulli_log_prob if family == 'bernoulli' else poisson_log_prob
    np.testing.assert_allclose(np.sum(wr * (np.log(pi) + fn(X, mu))), q_ref, rtol=1e-12)
    w_opt, m_opt = argmax_Q(family, X, wr)
    weights, means = mean_m_step(mean_stats(X, wr), max_mean=1.0 if family == 'bernoulli' else None)
    np.testing.assert_allclose(weights, w_opt, atol=1e-7)
    np.testing.assert_allclose(means, m_opt, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('seed', SEEDS)
def test_stats_are_additive(seed):
    X, _, _ = mixture_data('poisson', seed)
    wr = np.random.default_rng(seed).dirichlet(np.ones(3), size=len(X))
    cut = len(X) // 3
    a, b, whole = mean_stats(X[:cut], wr[:cut]), mean_stats(X[cut:], wr[cut:]), mean_stats(X, wr)
    for key in whole: np.testing.assert_allclose(a[key] + b[key], whole[key], rtol=1e-12)


def test_empty_component_gives_no_nan():
    X = np.tile(np.eye(3), (20, 1))
    wr = np.c_[np.eye(3)[np.arange(60) % 3], np.zeros((60, 2))]      # components 3 and 4 get nothing
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        weights, means = mean_m_step(mean_stats(X, wr), max_mean=1.0)
        log_joint = bernoulli_log_prob(X, means) + np.log(weights)
    assert np.isfinite(weights).all() and (weights[3:] < 1e-15).all() and (weights[3:] > 0).all()
    np.testing.assert_array_equal(means[3:], 0.0)
    assert not np.isnan(log_joint).any()
    np.testing.assert_allclose(weights[:3], 1 / 3, rtol=1e-12)
    # and the estimator: more components than distinct rows
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        bm = BernoulliMixture(5, init_params='random', random_state=0, max_iter=200).fit(X)
    assert np.isfinite(bm.weights_).all() and np.isfinite(bm.lower_bound_) and not np.isnan(bm.means_).any()


# ---- the estimators against a plain loop --------------------------------------------------------

@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('seed', SEEDS)
def test_fit_matches_plain_em_from_its_start(family, seed):
    X, _, _ = mixture_data(family, seed)
    k = 3
    sw = None if seed % 3 == 0 else (np.random.default_rng(seed).integers(0, 4, len(X)) if seed % 3 == 1
                                     else np.random.default_rng(seed).uniform(0.1, 2, len(X)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        est = EST[family](k, tol=1e-7, max_iter=150, random_state=seed).fit(X, sample_weight=sw)
        start = EST[family](k, max_iter=0, random_state=seed).fit(X, sample_weight=sw)
    weights, means, bounds = plain_em(family, X, start.weights_, start.means_, est.n_iter_, sw)
    np.testing.assert_allclose(est.weights_, weights, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(est.means_, means, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(est.lower_bounds_, bounds, rtol=1e-12)
    assert est.lower_bound_ == est.lower_bounds_[-1]
    assert len(est.trace_) == 2 * est.n_iter_


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('seed', SEEDS[:3])
def test_warm_start_from_given_parameters_matches_plain_em(family, seed):
    X, weights0, means0 = mixture_data(family, seed, k=3)
    rng = np.random.default_rng(seed)
    means0 = np.clip(means0 + rng.normal(0, 0.1, means0.shape), 0.05, 0.95 if family == 'bernoulli' else None)
    weights0 = np.full(3, 1 / 3)
    est = start_from(EST[family](3), X, weights0, means0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        est.set_params(max_iter=25, tol=0).fit(X)
    weights, means, bounds = plain_em(family, X, weights0, means0, 25)
    np.testing.assert_allclose(est.weights_, weights, rtol=1e-9)
    np.testing.assert_allclose(est.means_, means, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(est.lower_bounds_, bounds, rtol=1e-12)


@pytest.mark.parametrize('family', FAMILIES)
def test_warm_start_continues_the_same_path(family):
    X, _, _ = mixture_data(family, 3)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        whole = EST[family](3, tol=0, max_iter=10, random_state=0).fit(X)
        part = EST[family](3, tol=0, max_iter=4, random_state=0, warm_start=True).fit(X)
        first = part.lower_bounds_.copy()
        part.set_params(max_iter=6).fit(X)
    np.testing.assert_allclose(np.r_[first, part.lower_bounds_], whole.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(part.means_, whole.means_, rtol=1e-12)


@pytest.mark.parametrize('family', FAMILIES)
def test_engine_blocks_give_the_same_fit(family):
    X, _, _ = mixture_data(family, 1, n=257)
    start = EST[family](3, max_iter=0, random_state=0).fit(X)
    runs = []
    for block_size in (None, 10, 64):
        est = clone(start).set_params(max_iter=0).fit(X)
        runs.append((em(MixtureEMModel(est), X, tol=1e-8, max_iter=60, block_size=block_size), est))
    for res, est in runs[1:]:
        np.testing.assert_allclose(res.lower_bounds, runs[0][0].lower_bounds, rtol=1e-12)
        np.testing.assert_allclose(est.means_, runs[0][1].means_, rtol=1e-10, atol=1e-14)


# ---- sample weights -----------------------------------------------------------------------------

@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('seed', SEEDS[:3])
def test_integer_sample_weight_equals_repeated_rows(family, seed):
    X, weights0, means0 = mixture_data(family, seed, k=2)
    sw = np.random.default_rng(seed).integers(0, 4, size=len(X))
    Xrep = np.repeat(X, sw, axis=0)
    means0 = np.clip(means0, 0.1, 0.9 if family == 'bernoulli' else None)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        a = start_from(EST[family](2), X, weights0, means0, sample_weight=sw).set_params(max_iter=40, tol=0)
        b = start_from(EST[family](2), Xrep, weights0, means0).set_params(max_iter=40, tol=0)
        a.fit(X, sample_weight=sw); b.fit(Xrep)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-10)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(a.score(X, sample_weight=sw), b.score(Xrep), rtol=1e-12)


def test_deaths_weighted_equals_expanded_and_matches_the_literature():
    deaths = load_deaths()
    kw = dict(n_components=2, tol=1e-12, max_iter=4000, random_state=0)
    hw = PoissonMixture(**kw).fit(deaths.data, sample_weight=deaths.days)
    he = PoissonMixture(**kw).fit(deaths.expanded)
    ow, oe = np.argsort(hw.means_[:, 0]), np.argsort(he.means_[:, 0])
    np.testing.assert_allclose(hw.means_[ow], he.means_[oe], rtol=1e-6)
    np.testing.assert_allclose(hw.weights_[ow], he.weights_[oe], rtol=1e-6)
    np.testing.assert_allclose(hw.weights_[ow], [0.3599, 0.6401], atol=2e-4)
    np.testing.assert_allclose(hw.means_[ow, 0], [1.2561, 2.6634], atol=2e-4)
    delta = np.diff(hw.lower_bounds_)
    window = np.flatnonzero((delta[:-1] < 1e-8) & (delta[1:] > 1e-11))
    ratios = delta[window + 1] / delta[window]
    assert len(ratios) > 300 and ratios.max() < 1 and np.ptp(ratios) < 1e-3
    np.testing.assert_allclose(np.median(ratios), 0.9914, atol=1e-3)


@pytest.mark.parametrize('Est', [BernoulliMixture, PoissonMixture])
def test_sample_weight_forms_and_errors(Est):
    X, _, _ = mixture_data('bernoulli', 0, n=50)
    sw = np.arange(50) % 3 + 1.0
    a = Est(2, random_state=0).fit(X, sample_weight=sw)
    b = Est(2, random_state=0).fit(X, sample_weight=sw.tolist())
    np.testing.assert_array_equal(a.means_, b.means_)
    sw_copy = sw.copy()
    Est(2, random_state=0).fit(X, sample_weight=sw)
    np.testing.assert_array_equal(sw, sw_copy)                       # not overwritten
    with pytest.raises(ValueError, match='sample_weight'): Est(2).fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match='Negative'): Est(2).fit(X, sample_weight=-sw)


# ---- validation ---------------------------------------------------------------------------------

BAD = [
    (BernoulliMixture, lambda X: X * 2, 'binary'),
    (BernoulliMixture, lambda X: X + 0.5, 'binary'),
    (BernoulliMixture, lambda X: X - 1, 'binary'),
    (BernoulliMixture, lambda X: X - 1, 'Negative values in data'),
    (PoissonMixture, lambda X: X - 5, 'negative'),
    (PoissonMixture, lambda X: X + 0.25, 'integer'),
    (BernoulliMixture, lambda X: np.where(X == 1, np.nan, X), 'NaN'),
    (PoissonMixture, lambda X: np.where(X == 1, np.nan, X), 'NaN'),
    (BernoulliMixture, lambda X: np.where(X == 1, np.inf, X), 'inf'),
    (PoissonMixture, lambda X: np.where(X == 1, -np.inf, X), 'inf'),
    (BernoulliMixture, lambda X: X[:, 0], '2D'),
    (PoissonMixture, lambda X: X[:, 0], '2D'),
]


@pytest.mark.parametrize('Est, spoil, words', BAD)
def test_bad_input_in_fit(Est, spoil, words):
    X, _, _ = mixture_data('bernoulli', 0, n=40, d=3)
    with pytest.raises(ValueError, match=words): Est(2).fit(spoil(X))


@pytest.mark.parametrize('Est, spoil, words', [b for b in BAD if b[2] != '2D'])
def test_bad_input_in_predict_and_score(Est, spoil, words):
    X, _, _ = mixture_data('bernoulli', 0, n=40, d=3)
    est = Est(2, random_state=0).fit(X)
    for method in ('predict', 'predict_proba', 'score_samples', 'score', 'bic', 'aic'):
        with pytest.raises(ValueError, match=words): getattr(est, method)(spoil(X))


@pytest.mark.parametrize('Est', [BernoulliMixture, PoissonMixture])
def test_shape_errors(Est):
    X, _, _ = mixture_data('bernoulli', 0, n=40, d=3)
    with pytest.raises(ValueError, match='n_components'): Est(5).fit(X[:3])
    with pytest.raises(ValueError, match='n_components'): Est(0).fit(X)
    est = Est(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match='features'): est.predict(X[:, :2])
    with pytest.raises(ValueError, match='2D'): est.predict(X[0])
    with pytest.raises(ValueError, match='init_params'): Est(2, init_params='spectral').fit(X)


def test_check_helpers_point_at_the_first_offender():
    with pytest.raises(ValueError, match=r'row 1, column 2'): check_binary(np.array([[0., 1, 1], [1, 0, 3]]))
    with pytest.raises(ValueError, match=r'row 0, column 1'): check_counts(np.array([[0., 1.5]]))
    check_counts(np.array([[0., 1e6]], dtype=np.float32)); check_binary(np.zeros((2, 2), dtype=np.int8))


# ---- degenerate columns, dtypes -----------------------------------------------------------------

@pytest.mark.parametrize('init', ['kmeans', 'k-means++', 'random', 'random_from_data'])
def test_constant_and_zero_columns_fit_cleanly(init):
    Xb, _, _ = mixture_data('bernoulli', 2, n=200)
    Xb = np.c_[Xb, np.ones(200), np.zeros(200)]
    Xp, _, _ = mixture_data('poisson', 2, n=200)
    Xp = np.c_[Xp, np.zeros(200)]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bm = BernoulliMixture(3, init_params=init, random_state=0, max_iter=500).fit(Xb)
        pm = PoissonMixture(3, init_params=init, random_state=0, max_iter=500).fit(Xp)
        scores = bm.score_samples(Xb), pm.score_samples(Xp), bm.predict_proba(Xb), pm.predict_proba(Xp)
    np.testing.assert_allclose(bm.means_[:, -2:], np.tile([1.0, 0.0], (3, 1)), rtol=0, atol=1e-12)
    assert (bm.means_ <= 1).all() and (bm.means_[:, -1] == 0).all()
    np.testing.assert_array_equal(pm.means_[:, -1], 0.0)
    assert all(np.isfinite(s).all() for s in scores)
    assert np.isfinite(bm.lower_bound_) and np.isfinite(pm.lower_bound_)


@pytest.mark.parametrize('family', FAMILIES)
def test_seeding_starts_hand_every_row_to_a_seed(family):
    X, _, _ = mixture_data(family, 4, n=150, k=3)
    for init in ('k-means++', 'random_from_data'):
        start = EST[family](4, init_params=init, random_state=1, max_iter=0).fit(X)
        assert (start.weights_ >= 1 / 150 - 1e-12).all()             # every component owns its seed at least
        assert np.isfinite(start.score_samples(X)).all()             # no row is impossible at the start


@pytest.mark.parametrize('family', FAMILIES)
def test_integer_and_float32_input(family):
    X, _, _ = mixture_data(family, 5)
    ref = EST[family](2, random_state=0).fit(X)
    for dtype in (np.int64, np.int32, np.uint8, np.float32):
        est = EST[family](2, random_state=0).fit(X.astype(dtype))
        np.testing.assert_allclose(est.means_, ref.means_, rtol=1e-4 if dtype == np.float32 else 1e-12)
        assert est.means_.dtype == np.float64
        np.testing.assert_allclose(est.score_samples(X.astype(dtype)), ref.score_samples(X), rtol=1e-5)


def test_impossible_new_row():
    X = np.c_[np.eye(2)[np.arange(40) % 2], np.zeros(40)]
    bm = BernoulliMixture(2, random_state=0).fit(X)
    new = np.array([[1., 0., 1.]])
    assert bm.score_samples(new)[0] == -np.inf
    with pytest.raises(ValueError, match='impossible') as proba_error: bm.predict_proba(new)
    with pytest.raises(ValueError, match='impossible') as predict_error: bm.predict(np.r_[X[:3], new])
    assert str(predict_error.value) == str(proba_error.value).replace('[0]', '[3]')   # one code path, the same words


# ---- BaseMixture's additions: the _check_data hook, fit(callback=), weighted bic/aic, zero-weight rows -----------

ALL_EST = {**EST, 'gmm': GaussianMixture}


def family_data(family, seed=0, n=120):
    "Data a family accepts: mixture rows for Bernoulli and Poisson, Gaussian blobs for 'gmm'."
    if family != 'gmm': return mixture_data(family, seed, n=n, k=2, d=3)[0]
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(0, 1, size=(n // 2, 3)), rng.normal(4, 1, size=(n - n // 2, 3))]


def test_check_data_is_the_one_hook_for_fit_and_predict():
    "Bernoulli and Poisson override only _check_data; BaseMixture runs it in fit and before every prediction."
    for Est in (BernoulliMixture, PoissonMixture):
        assert Est._validate_X_predict is BaseMixture._validate_X_predict
        assert Est._check_parameters is not BaseMixture._check_parameters      # it checks weights_init, means_init
    seen = []
    class Recording(BernoulliMixture):
        def _check_data(self, X):
            seen.append(X.shape)
            super()._check_data(X)
    X = family_data('bernoulli')
    est = Recording(2, random_state=0).fit(X)
    assert seen == [X.shape]
    for method in ('predict', 'predict_proba', 'score_samples', 'score', 'bic', 'aic'):
        seen.clear()
        getattr(est, method)(X[:5])
        assert seen and all(shape == (5, 3) for shape in seen), method
    assert BaseMixture._check_data(est, np.array([[0.5, -3.0, 7.0]])) is None        # the default accepts anything


@pytest.mark.parametrize('family', list(ALL_EST))
def test_fit_callback_sees_every_ledger_row(family, capsys):
    X = family_data(family)
    rows = []
    est = ALL_EST[family](2, random_state=0, tol=1e-6).fit(X, callback=rows.append)
    assert rows == est.trace_.records() and len(rows) == 2 * est.n_iter_
    assert 'callback' not in est.get_params() and 'callback' not in clone(est).get_params()
    labelled = []
    labels = ALL_EST[family](2, random_state=0, tol=1e-6).fit_predict(X, callback=labelled.append)
    assert labelled == rows
    np.testing.assert_array_equal(labels, est.predict(X))
    verbose_rows = []                                                  # verbose: the printer and the callback both run
    ALL_EST[family](2, random_state=0, tol=1e-6, verbose=2, verbose_interval=1).fit(X, callback=verbose_rows.append)
    assert verbose_rows == rows and capsys.readouterr().out.count('  Iteration') == est.n_iter_
    every_run = []                                                     # n_init: each run's rows, in turn
    multi = ALL_EST[family](2, random_state=0, n_init=3, init_params='random').fit(X, callback=every_run.append)
    firsts = [i for i, r in enumerate(every_run) if (r['iteration'], r['step']) == (1, 'E')]
    assert len(firsts) == 3 and firsts[0] == 0
    runs = [every_run[a:b] for a, b in zip(firsts, firsts[1:] + [len(every_run)])]
    assert multi.trace_.records() in runs                              # the kept run is one of them
    with pytest.raises(ValueError, match='callback must be callable'): ALL_EST[family](2).fit(X, callback=1)
    with pytest.raises(TypeError): ALL_EST[family](2).fit(X, None, None, rows.append)   # keyword-only


@pytest.mark.parametrize('family', list(ALL_EST))
def test_weighted_bic_aic_equal_repeated_rows(family):
    X = family_data(family)
    sw = np.random.default_rng(1).integers(0, 4, size=len(X))
    est = ALL_EST[family](2, random_state=0).fit(X, sample_weight=sw)
    Xrep = np.repeat(X, sw, axis=0)
    np.testing.assert_allclose(est.bic(X, sample_weight=sw), est.bic(Xrep), rtol=1e-12)
    np.testing.assert_allclose(est.aic(X, sample_weight=sw), est.aic(Xrep), rtol=1e-12)
    np.testing.assert_allclose(est.score(X, sample_weight=sw), est.score(Xrep), rtol=1e-12)
    np.testing.assert_allclose(est.bic(X, np.ones(len(X))), est.bic(X), rtol=1e-12)
    p, n, ll = est._n_parameters(), sw.sum(), sw @ est.score_samples(X)
    np.testing.assert_allclose(est.bic(X, sw), -2 * ll + p * np.log(n), rtol=1e-12)
    np.testing.assert_allclose(est.aic(X, sw), -2 * ll + 2 * p, rtol=1e-12)
    with pytest.raises(ValueError, match='sample_weight'): est.bic(X, np.ones(3))
    with pytest.raises(ValueError, match='Negative'): est.aic(X, -np.ones(len(X)))
    with pytest.raises(ValueError, match='non-zero'): est.bic(X, np.zeros(len(X)))


@pytest.mark.filterwarnings('ignore::sklearn.exceptions.ConvergenceWarning')
@pytest.mark.parametrize('family', list(ALL_EST))
@pytest.mark.parametrize('init', ['kmeans', 'k-means++', 'random', 'random_from_data'])
def test_zero_weight_rows_sit_out_of_em(family, init):
    "Rows of weight zero are dropped before the start is drawn: the fit is exactly the fit of the other rows."
    X = family_data(family)
    sw = np.random.default_rng(2).integers(0, 3, size=len(X)).astype(float)
    kept = sw > 0
    kw = dict(n_components=2, init_params=init, random_state=0, tol=1e-6)
    a = ALL_EST[family](**kw)
    labels = a.fit_predict(X, sample_weight=sw)
    b = ALL_EST[family](**kw).fit(X[kept], sample_weight=sw[kept])
    for name in ('weights_', 'means_', 'lower_bounds_'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.trace_.free_energy, b.trace_.free_energy)
    assert labels.shape == (len(X),)
    np.testing.assert_array_equal(labels, a.predict(X))
    np.testing.assert_array_equal(labels[kept], b.predict(X[kept]))
    with pytest.raises(ValueError, match='positive sample_weight'):
        ALL_EST[family](3).fit(X, sample_weight=np.r_[1.0, 1.0, np.zeros(len(X) - 2)])


def test_impossible_row_of_zero_weight_does_not_stop_fit():
    X = np.c_[np.eye(2)[np.arange(40) % 2], np.zeros(40)]
    new = np.array([[1., 0., 1.]])                                    # impossible: column 2 is never on in X
    Xw, sw = np.r_[X, new], np.r_[np.ones(40), 0.0]
    bm = BernoulliMixture(2, random_state=0).fit(Xw, sample_weight=sw)
    ref = BernoulliMixture(2, random_state=0).fit(X)
    np.testing.assert_array_equal(bm.means_, ref.means_)
    assert np.isfinite(bm.bic(Xw, sample_weight=sw)) and np.isfinite(bm.score(Xw, sample_weight=sw))
    with pytest.raises(ValueError, match=r'row\(s\) \[40\].*impossible'):         # labels for every row, as predict
        BernoulliMixture(2, random_state=0).fit_predict(Xw, sample_weight=sw)
    assert bm.bic(Xw) == np.inf


# ---- inherited methods --------------------------------------------------------------------------

@pytest.mark.parametrize('family', FAMILIES)
def test_bic_aic_sample(family):
    X, _, _ = mixture_data(family, 0, n=300, k=2, d=4)
    est = EST[family](2, random_state=0, tol=1e-6).fit(X)
    ll = plain_em(family, X, est.weights_, est.means_, 1)[2][0] * len(X)
    p = (2 - 1) + 2 * 4
    assert est._n_parameters() == p
    np.testing.assert_allclose(est.bic(X), -2 * ll + p * np.log(len(X)), rtol=1e-12)
    np.testing.assert_allclose(est.aic(X), -2 * ll + 2 * p, rtol=1e-12)
    Xs, ys = est.sample(20_000)
    assert Xs.shape == (20_000, 4) and Xs.dtype == np.float64
    assert (Xs == np.round(Xs)).all() and (Xs >= 0).all()
    if family == 'bernoulli': assert set(np.unique(Xs)) <= {0.0, 1.0}
    np.testing.assert_allclose(np.bincount(ys) / 20_000, est.weights_, atol=0.015)
    for j in range(2):
        se = np.sqrt((est.means_[j] * (1 - est.means_[j]) if family == 'bernoulli' else est.means_[j]) / (ys == j).sum())
        assert (np.abs(Xs[ys == j].mean(0) - est.means_[j]) < 5 * se + 1e-12).all()


@pytest.mark.parametrize('Est', [BernoulliMixture, PoissonMixture])
def test_constructor_clone_and_params(Est):
    sig = inspect.signature(Est.__init__)
    assert [(p.name, p.default) for p in list(sig.parameters.values())[1:]] == [
        ('n_components', 1), ('tol', 1e-3), ('max_iter', 100), ('n_init', 1), ('init_params', 'kmeans'),
        ('weights_init', None), ('means_init', None), ('random_state', None), ('warm_start', False), ('verbose', 0),
        ('verbose_interval', 10), ('nan_policy', 'raise'), ('frozen', ()), ('algorithm', 'batch'), ('incremental_blocks', 10),
        ('learning_decay', 0.7), ('learning_offset', 0.0), ('init_sample_size', 100_000)]
    assert all(p.kind == p.KEYWORD_ONLY for p in list(sig.parameters.values())[2:])
    X, _, _ = mixture_data('bernoulli', 1, n=100)
    est = Est(3, tol=1e-5, n_init=2, init_params='random', random_state=4).fit(X)
    cl = clone(est)
    assert cl.get_params() == est.get_params() and not hasattr(cl, 'means_')
    np.testing.assert_array_equal(cl.fit(X).means_, est.means_)
    cl.set_params(n_components=2, max_iter=7)
    assert (cl.n_components, cl.max_iter) == (2, 7)
    params = cl.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        cl.fit(X)
    assert cl.get_params() == params                                  # fit leaves the parameters alone
    assert cl.means_.shape == (2, X.shape[1])


@pytest.mark.parametrize('family', FAMILIES)
def test_basic_estimator_contract_on_valid_data(family):
    "Our own versions of the scikit-learn checks that cannot run on their random real-valued data (see below)."
    X, _, _ = mixture_data(family, 2, n=120)
    est = EST[family](2, random_state=0)
    public = {k: v for k, v in vars(est).items() if not k.startswith('_')}
    assert est.fit(X) is est
    assert {k: v for k, v in vars(est).items() if not k.startswith('_') and not k.endswith('_')} == public
    assert est.n_features_in_ == X.shape[1]
    labels, proba, scores = est.predict(X), est.predict_proba(X), est.score_samples(X)
    again = EST[family](2, random_state=0).fit(X)                       # idempotent
    np.testing.assert_array_equal(again.predict(X), labels)
    np.testing.assert_array_equal(EST[family](2, random_state=0).fit_predict(X), labels)
    restored = pickle.loads(pickle.dumps(est))                        # pickle
    np.testing.assert_array_equal(restored.score_samples(X), scores)
    perm = np.random.default_rng(0).permutation(len(X))               # sample order and subset invariance
    np.testing.assert_allclose(est.score_samples(X[perm]), scores[perm], rtol=1e-14)
    np.testing.assert_allclose(est.predict_proba(X[:7]), proba[:7], rtol=1e-14)
    before = dict(vars(est)); est.predict(X); est.score(X)
    assert vars(est).keys() == before.keys()                          # predict/score change nothing
    ro = np.asfortranarray(X).copy(); ro.setflags(write=False)        # read-only, Fortran order
    np.testing.assert_allclose(EST[family](2, random_state=0).fit(ro).means_, est.means_, rtol=1e-12)


# ---- scikit-learn's estimator checks ------------------------------------------------------------

# These checks fit on random real-valued data (Gaussian noise, shifted or scaled), and BernoulliMixture accepts
# only 0/1 and PoissonMixture only non-negative integers, so both refuse that data with a ValueError before any
# estimator behaviour is exercised. Each check is listed with that reason; test_basic_estimator_contract_on_valid_data
# above and the pipelines below run the same contracts on data the models accept.
_REAL_DATA = "the check fits on random real-valued data, which {name} rejects ({support})"
_DATA_CHECKS = {
    'check_fit_score_takes_y', 'check_estimators_overwrite_params', 'check_dont_overwrite_parameters',
    'check_estimators_fit_returns_self', 'check_readonly_memmap_input', 'check_n_features_in_after_fitting',
    'check_estimators_dtypes', 'check_sample_weights_list', 'check_sample_weight_equivalence_on_dense_data',
    'check_dtype_object', 'check_pipeline_consistency', 'check_estimators_nan_inf', 'check_estimators_pickle',
    'check_f_contiguous_array_estimator', 'check_methods_sample_order_invariance', 'check_methods_subset_invariance',
    'check_fit2d_1feature', 'check_dict_unchanged', 'check_fit_idempotent', 'check_fit_check_is_fitted',
    'check_n_features_in', 'check_fit2d_predict1d',
}
# these use small integer matrices: Poisson accepts them, the values 2 and 3 are not binary (the pandas one runs
# where pandas is installed, as the dev extra does)
_BERNOULLI_ONLY = {'check_sample_weights_not_an_array', 'check_sample_weights_shape',
                   'check_sample_weights_not_overwritten', 'check_sample_weights_pandas_series'}


def expected_failed_checks(estimator):
    if isinstance(estimator, BernoulliMixture):
        reason = _REAL_DATA.format(name='BernoulliMixture', support='it needs binary data, every entry 0 or 1')
        return {c: reason for c in _DATA_CHECKS | _BERNOULLI_ONLY}
    if isinstance(estimator, PoissonMixture):
        reason = _REAL_DATA.format(name='PoissonMixture', support='it needs counts, non-negative integers')
        return {c: reason for c in _DATA_CHECKS}
    # pipelines: Pipeline fits the estimators held in its `steps` parameter in place, which these two checks read
    # as a changed parameter; test_constructor_clone_and_params and test_basic_estimator_contract_on_valid_data
    # check the same contracts on the mixtures themselves
    reason = "Pipeline fits the estimators inside its 'steps' parameter in place (a property of Pipeline)"
    return {'check_estimators_overwrite_params': reason, 'check_dont_overwrite_parameters': reason}


@parametrize_with_checks([BernoulliMixture(), PoissonMixture(), BernoulliMixture(2), PoissonMixture(2)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_checks_bare(estimator, check):
    check(estimator)


# The same checks with a scikit-learn transformer in front that maps their data into the model's support:
# Binarizer (x > 0) for Bernoulli, ordinal KBinsDiscretizer (bin numbers 0..3, i.e. counts) for Poisson.
_KBINS = dict(n_bins=4, encode='ordinal', quantile_method='averaged_inverted_cdf')
PIPELINES = [make_pipeline(Binarizer(), BernoulliMixture(random_state=0)),
             make_pipeline(Binarizer(), BernoulliMixture(2, init_params='k-means++', random_state=0)),
             make_pipeline(KBinsDiscretizer(**_KBINS), PoissonMixture(random_state=0)),
             make_pipeline(KBinsDiscretizer(**_KBINS), PoissonMixture(2, init_params='random_from_data', random_state=0))]


@parametrize_with_checks(PIPELINES, expected_failed_checks=expected_failed_checks)
def test_sklearn_checks_in_pipeline(estimator, check):
    check(estimator)


@pytest.mark.parametrize('family', FAMILIES)
def test_every_ledger_value_is_finite(family):
    "Many small random fits (where a Bernoulli mean rounds to 1 while q stays 1e-16): the ledger is finite throughout."
    rng = np.random.default_rng(11)
    for seed in range(60):
        n, d = int(rng.integers(8, 40)), int(rng.integers(1, 6))
        X = (rng.random((n, d)) < rng.random(d)).astype(float) if family == 'bernoulli' else rng.poisson(rng.uniform(0.1, 3, d), (n, d)).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', ConvergenceWarning)
            est = EST[family](int(rng.integers(2, 5)), init_params='random', random_state=seed, tol=0, max_iter=30).fit(X)
        led = est.trace_
        assert all(np.isfinite(led[f]).all() for f in ('log_likelihood', 'free_energy', 'kl_gap')), (seed, led)
        assert np.all(np.diff(led.free_energy) <= 1e-9 * np.abs(led.free_energy[:-1]) + 1e-12), seed


# ---- the chunked E-step of (9.7) ----------------------------------------------------------------

def _engine_e_step_in_one_piece(est, X, w=None):
    "The engine's E-step on all of X through the estimator's general table (`_estimate_log_prob`)."
    from klem_nb.em import LatentClassModel
    return LatentClassModel.e_step(MixtureEMModel(est), X, w)


def _assert_same_e_step(a, b, rtol=1e-12):
    for f in ('weight', 'log_likelihood', 'expected_log_joint', 'neg_entropy'):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=rtol)
    assert sorted(a.stats) == sorted(b.stats)
    for key in a.stats: np.testing.assert_allclose(a.stats[key], b.stats[key], rtol=rtol, atol=1e-300)


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_chunked_e_step_is_the_engine_e_step(family, dtype):
    "W X + b in chunks on every CPU (weights, boundary means, several chunks) = the engine's E-step in one piece."
    from klem_nb import discrete
    X, _, _ = mixture_data(family, 3, n=3 * discrete.E_STEP_ROWS + 17, k=3, d=5)
    est = EST[family](3, random_state=0, max_iter=3).fit(X)
    means = est.means_.copy()
    means[0, 0] = 0.0                                             # rows with x_0 > 0 impossible under component 0
    if family == 'bernoulli': means[1, 1] = 1.0                   # rows with x_1 = 0 impossible under component 1
    est.means_ = means
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(X))
    Xd = X.astype(dtype)
    lj = est._estimate_weighted_log_prob(Xd)
    assert np.isinf(lj).any() and np.isfinite(lj.max(1)).all()
    adapter = MixtureEMModel(est)
    for weights in (None, w):
        _assert_same_e_step(adapter.e_step(Xd, weights), _engine_e_step_in_one_piece(est, Xd, weights))
    # a mutation: b one nano off must be seen
    terms = est._log_joint_terms
    est._log_joint_terms = lambda: (lambda W, b, dead: (W, b + 1e-9, dead))(*terms())
    with pytest.raises(AssertionError): _assert_same_e_step(adapter.e_step(Xd), _engine_e_step_in_one_piece(est, Xd))


def test_a_subclass_table_is_heard_by_the_e_step():
    "A subclass that overrides `_estimate_log_prob` gets its own table in `fit`, not (9.7)."
    calls = []
    class Tempered(PoissonMixture):
        def _estimate_log_prob(self, X):
            calls.append(len(X))
            return 0.5 * super()._estimate_log_prob(X)
    X, _, _ = mixture_data('poisson', 2, n=5000, k=2, d=3)
    kw = dict(random_state=0, max_iter=4, tol=0)
    a, b = Tempered(2, **kw).fit(X), PoissonMixture(2, **kw).fit(X)
    assert sum(calls) >= 5 * len(X)                               # four E-steps and the final one
    assert not np.allclose(a.lower_bounds_, b.lower_bounds_)
    assert BernoulliMixture()._linear_table() and PoissonMixture()._linear_table() and not Tempered()._linear_table()


def test_check_binary_fast_path_still_refuses():
    "One scan accepts 0/1 (and -0.0); anything else goes on to the detailed checks and their messages."
    check_binary(np.array([[0., 1.], [-0., 1.]]))
    for bad, words in ((0.5, 'binary'), (2.0, 'binary'), (-1.0, 'Negative')):
        X = np.zeros((4, 3)); X[2, 1] = bad
        with pytest.raises(ValueError, match=words): check_binary(X)
    X = np.ones((3, 2)); X[1, 0] = np.nan                          # NaN (nan_policy='marginalize') passes the check
    check_binary(X)

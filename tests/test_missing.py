"""nan_policy='marginalize' (nbs/15_missing.ipynb): parity without NaN, closed forms, the strict-mode ledger with
NaN for every family and covariance type, imputation, bad input, and mutations that the checks must catch."""
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import klem_nb.gaussian as gaussian
from klem_nb.base import MixtureEMModel
from klem_nb.discrete import BernoulliMixture, PoissonMixture
from klem_nb.em import FreeEnergyIncreaseError, em
from klem_nb.gmm import GaussianMixture

TYPES = ('full', 'tied', 'diag', 'spherical')


def holes(X, rate, seed):
    "X with a fraction `rate` of its entries set to NaN at random (MCAR), no row left empty."
    rng = np.random.default_rng(seed)
    X = np.array(X, dtype=float)
    gone = rng.random(X.shape) < rate
    gone[gone.all(axis=1), rng.integers(0, X.shape[1])] = False
    X[gone] = np.nan
    return X


def gauss_data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    A = np.array([[1.0, 0.5, 0.2], [0.0, 1.0, -0.4], [0.0, 0.0, 0.7]])
    return np.vstack([rng.normal(size=(n // 2, 3)) @ A, rng.normal(size=(n - n // 2, 3)) * 0.8 + [3.0, 2.0, -1.0]])


def bern_data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(n)[:, None] < n // 2, [0.8, 0.7, 0.2, 0.9, 0.1], [0.2, 0.3, 0.7, 0.4, 0.6])
    return (rng.random((n, 5)) < p).astype(float)


def pois_data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    lam = np.where(np.arange(n)[:, None] < n // 2, [1.0, 4.0, 0.5, 2.0], [5.0, 1.0, 3.0, 6.0])
    return rng.poisson(lam).astype(float)


def estimators():
    yield from ((f'gaussian-{t}', GaussianMixture(2, covariance_type=t, reg_covar=0.0), gauss_data) for t in TYPES)
    yield 'bernoulli', BernoulliMixture(2), bern_data
    yield 'poisson', PoissonMixture(2), pois_data

CASES = list(estimators())


def started(est, X):
    "est after a max_iter=0 fit under 'marginalize': the starting θ, ready for the engine."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return est.set_params(max_iter=0, nan_policy='marginalize', random_state=0).fit(X)


# ---- parity without NaN ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name, est, data', CASES, ids=[c[0] for c in CASES])
def test_no_nan_same_fit_as_raise(name, est, data):
    X = data()
    a = est.set_params(random_state=0, nan_policy='raise').fit(X)
    pa = {k: np.copy(getattr(a, k)) for k in a._parameters}
    bounds = a.lower_bounds_.copy()
    b = est.set_params(nan_policy='marginalize').fit(X)
    for key, value in pa.items(): np.testing.assert_array_equal(getattr(b, key), value)
    np.testing.assert_array_equal(b.lower_bounds_, bounds)
    np.testing.assert_array_equal(b.score_samples(X), a.set_params(nan_policy='raise').score_samples(X))


# ---- closed forms ------------------------------------------------------------------------------------------------
def anderson(X):
    "Anderson (1957): MLE of a bivariate Gaussian whose second column is partly missing."
    c = ~np.isnan(X[:, 1])
    mu1, s11_all = X[:, 0].mean(), X[:, 0].var()
    a1, a2 = X[c, 0], X[c, 1]
    s11, s12, s22 = a1.var(), np.mean((a1 - a1.mean()) * (a2 - a2.mean())), a2.var()
    b = s12 / s11
    mean = np.array([mu1, a2.mean() - b * a1.mean() + b * mu1])
    cov = np.array([[s11_all, b * s11_all], [b * s11_all, s22 - b * b * s11 + b * b * s11_all]])
    return mean, cov


def anderson_data(seed):
    rng = np.random.default_rng(seed)
    X = rng.multivariate_normal([1.0, -2.0], [[2.0, 1.2], [1.2, 1.5]], size=200)
    X[rng.random(200) < np.where(X[:, 0] > 1.0, 0.6, 0.1), 1] = np.nan       # missing at random (depends on x1)
    return X


def fit_k1(X):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')           # tol=0: all iterations run, a ConvergenceWarning says so
        return GaussianMixture(1, nan_policy='marginalize', reg_covar=0.0, tol=0.0, max_iter=300).fit(X)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_anderson_closed_form(seed):
    X = anderson_data(seed)
    mean, cov = anderson(X)
    fit = fit_k1(X)
    np.testing.assert_allclose(fit.means_[0], mean, rtol=1e-8)
    np.testing.assert_allclose(fit.covariances_[0], cov, rtol=1e-8)


@pytest.mark.parametrize('cls, data', [(BernoulliMixture, bern_data), (PoissonMixture, pois_data)])
def test_mean_family_one_component_is_observed_column_mean(cls, data):
    X = holes(data(), 0.3, 1)
    fit = cls(1, nan_policy='marginalize').fit(X)
    np.testing.assert_allclose(fit.means_[0], np.nanmean(X, axis=0), rtol=1e-12)


# ---- the ledger ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name, est, data', CASES, ids=[c[0] for c in CASES])
def test_strict_ledger_with_nan(name, est, data):
    X = holes(data(), 0.25, 2)
    res = em(MixtureEMModel(started(est, X)), X, tol=0.0, max_iter=40, strict=True, block_size=97)
    led = res.ledger
    np.testing.assert_allclose(led.kl_gap[led.step == 'E'], 0, atol=1e-12)
    assert (np.diff(led.free_energy) <= 1e-10 * np.abs(led.free_energy[1:])).all()
    assert led.free_energy[-1] < led.free_energy[0] - 1e-3          # it moved
    # the lower bound is the observed-data log-likelihood: the same number as score()
    np.testing.assert_allclose(res.log_likelihood, est.score(X), rtol=1e-12)


@pytest.mark.parametrize('t', TYPES)
def test_expected_log_joint_from_stats_matches_e_step(t):
    X = holes(gauss_data(), 0.3, 3)
    est = started(GaussianMixture(2, covariance_type=t), X)
    e = MixtureEMModel(est).e_step(X)
    np.testing.assert_allclose(est._expected_log_joint(e.stats), e.expected_log_joint, rtol=1e-12)
    np.testing.assert_allclose(e.expected_log_joint - e.neg_entropy, e.log_likelihood, rtol=1e-12)


# ---- prediction and imputation -------------------------------------------------------------------------------------
def test_score_samples_are_observed_marginals():
    X = holes(gauss_data(), 0.3, 4)
    gm = GaussianMixture(2, nan_policy='marginalize', random_state=0).fit(X)
    ref = np.empty(len(X))
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        ref[i] = logsumexp([np.log(w) + multivariate_normal(m[o], S[np.ix_(o, o)]).logpdf(x[o])
                            for w, m, S in zip(gm.weights_, gm.means_, gm.covariances_)])
    np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-10)
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), proba.argmax(axis=1))


@pytest.mark.parametrize('name, est, data', CASES, ids=[c[0] for c in CASES])
def test_impute_keeps_observed_and_fills_every_hole(name, est, data):
    X = holes(data(), 0.2, 5)
    fit = est.set_params(nan_policy='marginalize', random_state=0, max_iter=100).fit(X)
    out = fit.impute(X)
    seen = ~np.isnan(X)
    np.testing.assert_array_equal(out[seen], X[seen])
    assert np.isfinite(out).all()
    # Σ_j p(j | x_o) E[x_m | x_o, j], rebuilt from predict_proba
    proba = fit.predict_proba(X)
    if isinstance(fit, GaussianMixture):
        cov = gaussian.full_covariances(fit.covariances_, fit.covariance_type, 2, X.shape[1])
        for i in np.flatnonzero(~seen.all(axis=1))[:20]:
            o, m = seen[i], ~seen[i]
            cond = [mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(S[np.ix_(o, o)], X[i, o] - mu[o]) for mu, S in zip(fit.means_, cov)]
            np.testing.assert_allclose(out[i, m], proba[i] @ np.array(cond), rtol=1e-10)
    else:
        np.testing.assert_allclose(out[~seen], (proba @ fit.means_)[~seen], rtol=1e-12)


def test_impute_beats_column_means_on_correlated_data():
    X = gauss_data(n=600)
    Xh = holes(X, 0.25, 6)
    gm = GaussianMixture(2, nan_policy='marginalize', random_state=0).fit(Xh)
    gone = np.isnan(Xh)
    err_gm = np.sqrt(np.mean((gm.impute(Xh) - X)[gone] ** 2))
    err_mean = np.sqrt(np.mean((np.where(gone, np.nanmean(Xh, axis=0), Xh) - X)[gone] ** 2))
    assert err_gm < 0.7 * err_mean


# ---- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('cls', [GaussianMixture, BernoulliMixture, PoissonMixture])
@pytest.mark.parametrize('bad', ['drop', 'MARGINALIZE', None, 1])
def test_bad_nan_policy(cls, bad):
    with pytest.raises(ValueError, match='nan_policy'):
        cls(nan_policy=bad).fit(np.ones((4, 2)) * [0.0, 1.0] + np.eye(4)[:, :2])


@pytest.mark.parametrize('name, est, data', CASES, ids=[c[0] for c in CASES])
def test_row_without_observed_value(name, est, data):
    X = holes(data(), 0.2, 7)
    X[11] = np.nan
    with pytest.raises(ValueError, match='row 11'):
        est.set_params(nan_policy='marginalize').fit(X)
    X[11] = data()[11]
    fit = est.set_params(nan_policy='marginalize', random_state=0).fit(X)
    before = {k: np.copy(getattr(fit, k)) for k in fit._parameters}
    empty = X.copy(); empty[3] = np.nan
    for method in (fit.score_samples, fit.predict, fit.predict_proba, fit.impute, fit.fit):
        with pytest.raises(ValueError, match='row 3'): method(empty)
    for key, value in before.items(): np.testing.assert_array_equal(getattr(fit, key), value)   # failed fit: unchanged


@pytest.mark.parametrize('name, est, data', CASES, ids=[c[0] for c in CASES])
def test_raise_policy_still_refuses_nan_and_inf_always(name, est, data):
    X = holes(data(), 0.2, 8)
    with pytest.raises(ValueError, match='NaN'): est.set_params(nan_policy='raise').fit(X)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match='infinity'): est.set_params(nan_policy='marginalize').fit(X)


# ---- mutations: break one ingredient, a check above must fail ------------------------------------------------------
def test_mutation_without_conditional_covariance_misses_closed_form(monkeypatch):
    original = gaussian.MissingRows.stats
    def no_cov(self, wresp, frames):
        self.cond_cov = [0 * C for C in self.cond_cov]
        return original(self, wresp, frames)
    monkeypatch.setattr(gaussian.MissingRows, 'stats', no_cov)
    X = anderson_data(0)
    mean, cov = anderson(X)
    fit = fit_k1(X)
    assert abs(fit.covariances_[0, 1, 1] - cov[1, 1]) > 1e-2


def test_mutation_without_conditional_entropy_breaks_strict_ledger(monkeypatch):
    monkeypatch.setattr(gaussian.MissingRows, 'neg_entropy', lambda self, resp: np.zeros(len(resp)))
    X = holes(gauss_data(), 0.25, 2)
    with pytest.raises(FreeEnergyIncreaseError):
        em(MixtureEMModel(started(GaussianMixture(2, reg_covar=0.0), X)), X, tol=0.0, max_iter=40, strict=True)


def test_mutation_counting_missing_entries_in_mean_family_misses_closed_form(monkeypatch):
    import klem_nb.discrete as discrete
    original = discrete.mean_stats
    def all_counted(X, wresp, complement=False, observed=False):
        s = original(X, wresp, complement, observed)
        s.pop('nko', None)
        return s
    monkeypatch.setattr(discrete, 'mean_stats', all_counted)
    X = holes(pois_data(), 0.3, 1)
    fit = PoissonMixture(1, nan_policy='marginalize').fit(X)
    assert not np.allclose(fit.means_[0], np.nanmean(X, axis=0), rtol=1e-3)


# ---- scikit-learn's own checks with NaN allowed ---------------------------------------------------------------------
from sklearn.utils.estimator_checks import parametrize_with_checks

# Gaussian only: scikit-learn's checks feed real-valued data, which Bernoulli/Poisson refuse by design (their checks
# run behind a KBinsDiscretizer in tests/test_mixtures.py). With allow_nan set, the checks also fit data with NaN.
MARGINALIZE = [GaussianMixture(covariance_type=t, nan_policy='marginalize') for t in TYPES] + \
              [GaussianMixture(n_components=2, covariance_type='diag', nan_policy='marginalize', max_iter=20)]


def expected_failed(estimator):
    "As in tests/test_estimator_checks.py: with several components, random starts draw per row."
    if estimator.n_components > 1:
        return {'check_sample_weight_equivalence_on_dense_data': 'random starts draw per row (as for KMeans)'}
    return {}


@parametrize_with_checks(MARGINALIZE, expected_failed_checks=expected_failed)
def test_sklearn_checks_under_marginalize(estimator, check):
    check(estimator)


def test_tied_expanded_path_equals_full_path_far_from_origin():
    "The tied rows' expanded squares against the per-component path of 'full' with k copies of the same precision."
    rng = np.random.default_rng(1)
    k, d, n = 4, 6, 500
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + 0.3 * np.eye(d)
    mu, w = rng.normal(size=(k, d)) * 3 + 50, rng.dirichlet(np.ones(k))
    X = holes(rng.normal(size=(n, d)) * 2 + 50, 0.3, 9)
    X = X[np.isnan(X).any(axis=1)]
    tied = gaussian.MissingRows(X, 'tied', w, mu, gaussian.precision_cholesky(cov, 'tied'))
    full = gaussian.MissingRows(X, 'full', w, mu, gaussian.precision_cholesky(np.repeat(cov[None], k, 0), 'full'))
    np.testing.assert_allclose(tied.log_joint, full.log_joint, rtol=1e-13)
    np.testing.assert_allclose(tied.log_det_A, full.log_det_A, rtol=1e-13, atol=1e-13)
    resp = np.exp(full.log_joint - logsumexp(full.log_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(tied.imputed(resp), full.imputed(resp), rtol=1e-13)
    a, b = tied.stats(resp, mu + 0.1), full.stats(resp, mu + 0.1)
    np.testing.assert_allclose(a['sum_x'], b['sum_x'], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(a['sum_xx'], b['sum_xx'].sum(axis=0), rtol=1e-12)


# ---- the fill-and-correct path (7.22)-(7.23) against the textbook formulas, rows with up to 6 holes ------------------
def textbook(X, weights, means, cov, frames, resp):
    "Per row and component by slicing Σ: log π N(x_o), and Σ r (x̂ - F), Σ r [(x̂ - F)(x̂ - F)ᵀ + C] as full (k, d, d)."
    n, d = X.shape
    k = len(weights)
    lj, sx, sxx = np.empty((n, k)), np.zeros((k, d)), np.zeros((k, d, d))
    for i in range(n):
        o, m = ~np.isnan(X[i]), np.isnan(X[i])
        for j in range(k):
            S, mu = cov[j], means[j]
            lj[i, j] = np.log(weights[j]) + multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(X[i, o])
            B = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            xh = X[i].copy()
            xh[m] = mu[m] + B @ (X[i, o] - mu[o])
            C = np.zeros((d, d))
            C[np.ix_(m, m)] = S[np.ix_(m, m)] - B @ S[np.ix_(o, m)]
            sx[j] += resp[i, j] * (xh - frames[j])
            sxx[j] += resp[i, j] * (np.outer(xh - frames[j], xh - frames[j]) + C)
    return lj, sx, sxx


@pytest.mark.parametrize('t', TYPES)
@pytest.mark.parametrize('offset', [0.0, 1e4])
def test_fill_and_correct_matches_textbook(t, offset):
    rng = np.random.default_rng(10)
    k, d, n = 3, 7, 120
    covs = np.stack([(lambda A: A @ A.T / d + 0.5 * np.eye(d))(rng.normal(size=(d, d))) for _ in range(k)])
    cov = {'full': covs, 'tied': covs[0], 'diag': covs[:, range(d), range(d)], 'spherical': np.array([0.7, 1.3, 2.0])}[t]
    full = gaussian.full_covariances(cov, t, k, d)
    means = rng.normal(size=(k, d)) * 2 + offset
    w = np.array([0.2, 0.3, 0.5])
    X = holes(rng.normal(size=(n, d)) * 1.5 + offset, 0.45, 11)
    assert np.isnan(X).sum(axis=1).max() >= 6                   # closed forms (m <= 3), Cholesky by planes (4, 5), numpy (6+)
    frames = means + rng.normal(size=(k, d))
    rows = gaussian.MissingRows(X, t, w, means, gaussian.precision_cholesky(cov, t))
    resp = np.exp(rows.log_joint - logsumexp(rows.log_joint, axis=1, keepdims=True))
    lj, sx, sxx = textbook(X, w, means, full, frames, resp)
    np.testing.assert_allclose(rows.log_joint, lj, rtol=1e-10)
    s = rows.stats(resp, frames)
    np.testing.assert_allclose(s['sum_x'], sx, rtol=1e-9, atol=1e-9 * np.abs(sx).max())
    want = {'full': sxx, 'tied': sxx.sum(0), 'diag': np.diagonal(sxx, axis1=1, axis2=2),
            'spherical': np.trace(sxx, axis1=1, axis2=2)}[t]
    np.testing.assert_allclose(s['sum_xx'], want, rtol=1e-9)


@pytest.mark.parametrize('t', TYPES)
def test_fit_is_translation_invariant(t):
    "The fill-and-correct sums hold their digits far from the origin: the same fit on X and on X + 1e4."
    X = holes(gauss_data(), 0.25, 12)
    fit = lambda Z, m0: GaussianMixture(2, covariance_type=t, nan_policy='marginalize', tol=0.0, max_iter=30,
                                        means_init=m0, reg_covar=0.0, random_state=0).fit(Z)
    m0 = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a, b = fit(X, m0), fit(X + 1e4, m0 + 1e4)
    np.testing.assert_allclose(b.means_ - 1e4, a.means_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-8)
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-9)


def test_mutation_without_the_correction_misses_the_marginal(monkeypatch):
    "Drop the holes' correction of (7.22): the table is then the density of the filled row y, not the observed marginal."
    original = gaussian._matrix_missing_table
    def uncorrected(self, rows):
        before = rows.log_joint.copy()
        original(self, rows)
        rows.log_joint[...] = before
    monkeypatch.setattr(gaussian._MatrixType, 'missing_table', uncorrected)
    X = holes(gauss_data(), 0.3, 4)
    gm = started(GaussianMixture(2), X)
    i = int(np.flatnonzero(np.isnan(X).any(axis=1))[0])
    o = ~np.isnan(X[i])
    ref = logsumexp([np.log(w) + multivariate_normal(m[o], S[np.ix_(o, o)]).logpdf(X[i, o])
                     for w, m, S in zip(gm.weights_, gm.means_, gm.covariances_)])
    assert abs(gm.score_samples(X[i:i + 1])[0] - ref) > 1e-3


# ---- a fit keeps each block's Holes (filled rows, hole layout) for all its iterations -----------------------------------
def fit_marginalize(X, t, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return GaussianMixture(3, covariance_type=t, nan_policy='marginalize', tol=0.0, max_iter=15, reg_covar=1e-6,
                               random_state=0, **kw).fit(X)


@pytest.mark.parametrize('t', TYPES)
def test_kept_holes_fit_equals_holes_made_every_step(t, monkeypatch):
    "The kept Holes are filled at the first E-step's centre, not at each iteration's: the fit is the same to rounding."
    X = holes(np.vstack([gauss_data(1, 400), gauss_data(2, 400) + 5.0]), 0.3, 13)
    kept = fit_marginalize(X, t)
    import klem_nb.base as base
    monkeypatch.setattr(base._BlockCache, 'get', lambda self, X, make: make(X))   # every E-step makes its own
    fresh = fit_marginalize(X, t)
    np.testing.assert_allclose(kept.lower_bounds_, fresh.lower_bounds_, rtol=1e-12)
    for name in ('weights_', 'means_', 'covariances_'):
        np.testing.assert_allclose(getattr(kept, name), getattr(fresh, name), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('t', ['tied', 'diag'])
def test_holes_made_once_per_block_and_dropped_after_fit(t, monkeypatch):
    import klem_nb.gmm as gmm
    made = []
    class Counted(gaussian.Holes):
        def __init__(self, X, *args, **kw):
            made.append(len(X))
            super().__init__(X, *args, **kw)
    monkeypatch.setattr(gmm, 'Holes', Counted)
    X = holes(gauss_data(3, 20_000), 0.2, 14)                    # one block (HOLES_BLOCK_ROWS), in two parts on two CPUs
    monkeypatch.setattr(gmm, 'available_cpus', lambda: 2)
    est = fit_marginalize(X, t, n_init=2)
    assert est.n_iter_ == 15 and sorted(made) == [10_000, 10_000]   # both runs, every iteration: two makes
    made.clear()
    monkeypatch.setattr(gmm, 'available_cpus', lambda: 1)
    fit_marginalize(X, t)
    assert made == [20_000]                                      # one CPU: the block whole
    assert est._fit_blocks is None                               # nothing of the data outlives the fit
    est.score_samples(X[:50])                                    # new data after the fit: made afresh, not kept
    assert made[-1] == 50 and est._fit_blocks is None


@pytest.mark.parametrize('t', TYPES)
def test_any_fill_gives_the_same_rows_far_from_origin(t):
    "(7.22)-(7.23) hold for any fill f; far from the origin, f far from the centre still keeps the digits."
    rng = np.random.default_rng(15)
    k, d, n = 3, 5, 200
    covs = np.stack([(lambda A: A @ A.T / d + 0.5 * np.eye(d))(rng.normal(size=(d, d))) for _ in range(k)])
    cov = {'full': covs, 'tied': covs[0], 'diag': covs[:, range(d), range(d)], 'spherical': np.array([0.7, 1.3, 2.0])}[t]
    means = rng.normal(size=(k, d)) + 1e4
    X = holes(rng.normal(size=(n, d)) * 1.5 + 1e4, 0.3, 16)
    kern = gaussian.GaussianKernels(t, np.array([0.2, 0.3, 0.5]), means, gaussian.precision_cholesky(cov, t),
                                    frames=means + 0.1)
    at_c = gaussian.ObservedRows(kern, X)
    elsewhere = gaussian.ObservedRows(kern, X, gaussian.Holes(X, kern.centre + rng.normal(size=d) * 3,
                                                             gaussian.COVARIANCE[t].solves))
    np.testing.assert_allclose(elsewhere.log_joint, at_c.log_joint, rtol=1e-12)
    resp = np.exp(at_c.log_joint - logsumexp(at_c.log_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(elsewhere.imputed(resp), at_c.imputed(resp), rtol=1e-13)
    a, b = elsewhere.stats(resp), at_c.stats(resp)
    for key in a: np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize('t', ['diag', 'spherical'])
def test_holes_keep_the_filled_rows_features(t, monkeypatch):
    "From d = 16 a diag/spherical fit keeps Φ of each block's filled rows with its Holes (not Φ of X): the same fit, bit for bit, as forming Φ every E-step."
    import klem_nb.gmm as gmm
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 16)) + np.repeat(rng.normal(scale=3, size=(3, 16)), 1000, axis=0)
    X[rng.random(X.shape) < 0.1] = np.nan
    kw = dict(covariance_type=t, nan_policy='marginalize', random_state=0, max_iter=5, tol=0)
    seen = []
    real = gmm.Holes.__init__
    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.append(self)
    monkeypatch.setattr(gmm.Holes, '__init__', spy)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        est = GaussianMixture(3, **kw)
        assert est._fit_frame(X)[1] is None                    # X's own Φ: not made for data with holes
        kept = est.fit(X)
        assert seen and all(getattr(h, 'features', None) is not None for h in seen)
        assert all(h.nbytes > h.features.values.nbytes for h in seen)   # counted against the fit's budget
        monkeypatch.setattr(gaussian.GaussianKernels, 'with_features', lambda self, features: self)   # Φ formed every E-step
        made = GaussianMixture(3, **kw).fit(X)
    assert kept.lower_bound_ == made.lower_bound_
    np.testing.assert_array_equal(kept.means_, made.means_)
    np.testing.assert_array_equal(kept.covariances_, made.covariances_)


def test_mutation_stale_holes_features_change_the_fit(monkeypatch):
    "Corrupting the kept Φ of the filled rows changes the fit: the E-step really reads it."
    import klem_nb.gmm as gmm
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 16)) + np.repeat(rng.normal(scale=3, size=(3, 16)), 1000, axis=0)
    X[rng.random(X.shape) < 0.1] = np.nan
    kw = dict(covariance_type='diag', nan_policy='marginalize', random_state=0, max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        good = GaussianMixture(3, **kw).fit(X)
        real = gmm._KeptFeatures.keep
        def corrupt(self, X, phi):
            real(self, X, phi * 1.01 if np.isfinite(X).all() else phi)   # only the filled rows' Φ, as a block's first E-step keeps it
        monkeypatch.setattr(gmm._KeptFeatures, 'keep', corrupt)
        bad = GaussianMixture(3, **kw).fit(X)
    assert abs(bad.lower_bound_ - good.lower_bound_) > 1e-6 * abs(good.lower_bound_)


def test_holes_blocks_run_their_parts_side_by_side(monkeypatch):
    "A fit with holes splits each block into one row range per CPU (each with its kept Holes); the fit is the one-part fit to rounding."
    from klem_nb import gmm
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(6000, 5)), rng.normal(size=(6000, 5)) + 3]
    X[rng.random(X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(1), 0] = 0.0
    calls = []
    real = gmm.GaussianMixture._observed_parts
    def spy(self, X, sample_weight, stats, T):
        calls.append(T)
        return real(self, X, sample_weight, stats, T)
    monkeypatch.setattr(gmm.GaussianMixture, '_observed_parts', spy)
    def fit(cpus):
        monkeypatch.setattr(gmm, 'available_cpus', lambda: cpus)
        calls.clear()
        est = gmm.GaussianMixture(2, covariance_type='full', nan_policy='marginalize', random_state=0, tol=0, max_iter=8).fit(X)
        return est, list(calls)
    two, c2 = fit(2)
    one, c1 = fit(1)
    assert c2 and set(c2) == {2} and not c1
    np.testing.assert_allclose(two.lower_bound_, one.lower_bound_, rtol=1e-12)
    np.testing.assert_allclose(two.means_, one.means_, rtol=1e-10)
    np.testing.assert_allclose(two.covariances_, one.covariances_, rtol=1e-9)

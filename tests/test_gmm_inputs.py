"""Bad inputs, degenerate data, sample weights, warm starts, restarts and warnings of klem_nb.gmm.GaussianMixture."""
import re
import warnings

import numpy as np
import pytest
import sklearn.mixture
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from klem_nb.datasets import load_faithful
from klem_nb.gmm import GaussianMixture

COVARIANCE_TYPES = ('full', 'tied', 'diag', 'spherical')
X_OF = load_faithful().data
X_BLOBS, _ = make_blobs(n_samples=240, centers=[[0, 0], [8, 0], [0, 8]], cluster_std=1.0, random_state=0)


def quiet_fit(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        return est.fit(X, **kw)


def start_for(covariance_type, k=2, d=2):
    "A deterministic start for Old Faithful."
    prec = np.diag([1.0, 0.01])
    precisions = {'full': np.tile(prec, (k, 1, 1)), 'tied': prec, 'diag': np.tile([1.0, 0.01], (k, 1)),
                  'spherical': np.full(k, 0.05)}[covariance_type]
    return dict(weights_init=np.full(k, 1 / k), means_init=[[2.5, 60.0], [3.5, 75.0]][:k], precisions_init=precisions)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('X, word', [
    (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 1.0]]), 'NaN'),
    (np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 1.0]]), 'inf'),
    (np.array([[0.0, 1.0], [-np.inf, 2.0], [3.0, 1.0]]), 'inf'),
    (np.arange(10.0), '2D'),
    (np.zeros((0, 2)), 'sample'),
    (np.array([[1.0, 2.0]]), 'sample'),
    ([['a', 'b'], ['c', 'd']], 'could not convert'),
])
def test_bad_X_in_fit(X, word):
    with pytest.raises(ValueError, match=re.escape(word)):
        GaussianMixture().fit(X)


@pytest.mark.parametrize('method', ['predict', 'predict_proba', 'score_samples', 'score', 'bic', 'aic'])
def test_bad_X_after_fit(method):
    gm = GaussianMixture(2, random_state=0).fit(X_OF)
    with pytest.raises(ValueError, match='features'):
        getattr(gm, method)(np.c_[X_OF, X_OF])
    with pytest.raises(ValueError, match='NaN'):
        getattr(gm, method)(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match='2D'):
        getattr(gm, method)(X_OF[:, 0])


@pytest.mark.parametrize('method', ['predict', 'predict_proba', 'score_samples', 'score', 'sample'])
def test_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(GaussianMixture(), method)(X_OF) if method != 'sample' else GaussianMixture().sample(3)


@pytest.mark.parametrize('params, word', [
    (dict(n_components=0), 'n_components'),
    (dict(n_components=1.5), 'n_components'),
    (dict(covariance_type='fullest'), 'covariance_type'),
    (dict(covariance_type=None), 'covariance_type'),
    (dict(tol=-1e-3), 'tol'),
    (dict(reg_covar=-1.0), 'reg_covar'),
    (dict(max_iter=-1), 'max_iter'),
    (dict(n_init=0), 'n_init'),
    (dict(init_params='spectral'), 'init_params'),
    (dict(verbose_interval=0), 'verbose_interval'),
    (dict(warm_start='yes'), 'warm_start'),
])
def test_bad_parameters(params, word):
    with pytest.raises(ValueError, match=word):
        GaussianMixture(**params).fit(X_OF)


def test_more_components_than_samples():
    with pytest.raises(ValueError, match='n_components'):
        GaussianMixture(n_components=5).fit(X_OF[:4])


@pytest.mark.parametrize('params, message', [
    (dict(weights_init=[0.5, 0.6]), 'should be normalized'),
    (dict(weights_init=[1.2, -0.2]), 'range [0, 1]'),
    (dict(weights_init=[1.0]), "'weights' should have the shape of (2,)"),
    (dict(means_init=np.zeros((2, 3))), "'means' should have the shape of (2, 2)"),
    (dict(means_init=np.zeros(2)), "'means' should have the shape of (2, 2)"),
    (dict(precisions_init=np.ones((2, 2))), "'full precision' should have the shape of (2, 2, 2)"),
    (dict(precisions_init=-np.tile(np.eye(2), (2, 1, 1))), "'full precision' should be symmetric, positive-definite"),
    (dict(covariance_type='tied', precisions_init=[[1.0, 0.5], [0.0, 1.0]]), 'symmetric, positive-definite'),
    (dict(covariance_type='diag', precisions_init=[[1.0, 0.0], [1.0, 1.0]]), "'diag precision' should be positive"),
    (dict(covariance_type='spherical', precisions_init=[1.0, -1.0]), "'spherical precision' should be positive"),
    (dict(covariance_type='spherical', precisions_init=[1.0, 1.0, 1.0]), 'should have the shape of (2,)'),
])
def test_bad_starting_values(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GaussianMixture(n_components=2, **params).fit(X_OF)


def test_starting_values_not_modified():
    "The constructor arguments stay what the user passed (lists stay lists)."
    start = dict(weights_init=[0.5, 0.5], means_init=[[2.5, 60.0], [3.5, 75.0]])
    gm = GaussianMixture(2, **start).fit(X_OF)
    assert gm.weights_init == [0.5, 0.5] and gm.means_init == [[2.5, 60.0], [3.5, 75.0]]


@pytest.mark.parametrize('sample_weight, word', [
    (-np.ones(len(X_OF)), 'Negative'),
    (np.ones(3), '(?i)sample.weight'),
    (np.ones((len(X_OF), 2)), '(?i)sample.weight'),
    (np.zeros(len(X_OF)), '(?i)sample.weight'),
    (np.r_[np.nan, np.ones(len(X_OF) - 1)], 'NaN'),
])
def test_bad_sample_weight(sample_weight, word):
    with pytest.raises(ValueError, match=word):
        GaussianMixture(2, random_state=0).fit(X_OF, sample_weight=sample_weight)


def test_sample_rejects_nonpositive():
    gm = GaussianMixture(2, random_state=0).fit(X_OF)
    with pytest.raises(ValueError, match='n_samples'):
        gm.sample(0)


# ---------------------------------------------------------------------------------------------- degenerate data
@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_identical_cluster_inside_spread_data(covariance_type):
    "A clump of identical points fits thanks to reg_covar, as scikit-learn's does, to the same answer."
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(60, 2)) * 3, np.tile([[1.0, 1.0]], (25, 1))])
    ours = quiet_fit(GaussianMixture(2, covariance_type=covariance_type, random_state=0), X)
    theirs = quiet_fit(sklearn.mixture.GaussianMixture(2, covariance_type=covariance_type, random_state=0), X)
    assert np.isfinite(ours.lower_bound_)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-6)
    if covariance_type != 'tied':
        j = int(np.argmin(np.abs(ours.means_ - 1).sum(1)))
        np.testing.assert_allclose(ours.means_[j], [1, 1], atol=1e-8)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('n_components', [1, 2])
@pytest.mark.parametrize('reg_covar', [1e-6, 0.0])
def test_all_points_identical(covariance_type, n_components, reg_covar):
    "Either a fit with finite numbers or a ValueError that explains itself; never a bare LinAlgError."
    X = np.tile([[1.0, 2.0]], (20, 1))
    gm = GaussianMixture(n_components, covariance_type=covariance_type, reg_covar=reg_covar, random_state=0)
    try:
        quiet_fit(gm, X)
    except np.linalg.LinAlgError:  # pragma: no cover - the failure this test exists to catch
        pytest.fail('bare LinAlgError')
    except ValueError as e:
        assert reg_covar == 0 and 'not positive definite' in str(e) and 'reg_covar' in str(e)
    else:
        assert np.isfinite(gm.means_).all() and np.isfinite(gm.lower_bound_)
        # the data's component sits on the point; a second one is left empty (weight ~1e-15), as in scikit-learn
        np.testing.assert_allclose(gm.means_[np.argmax(gm.weights_)], [1.0, 2.0], atol=1e-6)
        np.testing.assert_allclose(gm.weights_.max(), 1.0, atol=1e-12)
        if reg_covar > 0: assert gm.converged_


def test_collapsed_component_error_names_the_fix():
    "A component on a single point with reg_covar=0: ValueError naming the component and reg_covar."
    X = np.vstack([np.random.default_rng(0).normal(size=(30, 2)), [[50.0, 50.0]]])
    gm = GaussianMixture(2, reg_covar=0, means_init=[[0, 0], [50, 50]], random_state=0)
    with pytest.raises(ValueError, match=r'component \d.*reg_covar'):
        gm.fit(X)


# ------------------------------------------------------------------------------------------------ sample weights
@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows_given_start(covariance_type):
    w = np.random.default_rng(2).integers(0, 4, size=len(X_OF))
    kw = dict(n_components=2, covariance_type=covariance_type, **start_for(covariance_type))
    weighted = GaussianMixture(**kw).fit(X_OF, sample_weight=w)
    repeated = GaussianMixture(**kw).fit(np.repeat(X_OF, w, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_
    for a in ('weights_', 'means_', 'covariances_', 'precisions_cholesky_'):
        np.testing.assert_allclose(getattr(weighted, a), getattr(repeated, a), rtol=1e-9, atol=1e-12, err_msg=a)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(weighted.predict_proba(X_OF), repeated.predict_proba(X_OF), atol=1e-9)
    np.testing.assert_allclose(weighted.score(X_OF, sample_weight=w), repeated.score(np.repeat(X_OF, w, axis=0)),
                               rtol=1e-12)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows_kmeans_start(covariance_type):
    "k-means sees the weights; on well separated clusters it finds the same clusters (perhaps in another order)."
    w = np.random.default_rng(3).integers(1, 4, size=len(X_BLOBS))
    kw = dict(n_components=3, covariance_type=covariance_type, random_state=0)
    weighted = GaussianMixture(**kw).fit(X_BLOBS, sample_weight=w)
    repeated = GaussianMixture(**kw).fit(np.repeat(X_BLOBS, w, axis=0))
    a, b = np.lexsort(weighted.means_.T), np.lexsort(repeated.means_.T)
    np.testing.assert_allclose(weighted.means_[a], repeated.means_[b], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.weights_[a], repeated.weights_[b], rtol=1e-9)
    if covariance_type != 'tied':
        np.testing.assert_allclose(weighted.covariances_[a], repeated.covariances_[b], rtol=1e-8)
    np.testing.assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-10)


def test_zero_weights_equal_removed_rows():
    w = (np.arange(len(X_OF)) % 3 != 0).astype(float)
    kw = dict(n_components=2, **start_for('full'))
    a = GaussianMixture(**kw).fit(X_OF, sample_weight=w)
    b = GaussianMixture(**kw).fit(X_OF[w > 0])
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    assert a.n_iter_ == b.n_iter_


def test_sample_weight_scale_invariance():
    kw = dict(n_components=2, **start_for('diag'), covariance_type='diag')
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X_OF))
    a, b = GaussianMixture(**kw).fit(X_OF, sample_weight=w), GaussianMixture(**kw).fit(X_OF, sample_weight=7 * w)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-12)


# ------------------------------------------------------------------------------ warm starts, restarts, warnings
@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_warm_start_continues_the_path(covariance_type):
    "Five iterations, then five more from where they stopped, equal ten in one go."
    kw = dict(n_components=2, covariance_type=covariance_type, tol=0.0, random_state=0)
    one_go = quiet_fit(GaussianMixture(max_iter=10, **kw), X_OF)
    warm = GaussianMixture(max_iter=5, warm_start=True, **kw)
    quiet_fit(warm, X_OF)
    first_bounds = warm.lower_bounds_.copy()
    quiet_fit(warm, X_OF)
    assert warm.n_iter_ == 5
    np.testing.assert_allclose(np.r_[first_bounds, warm.lower_bounds_], one_go.lower_bounds_, rtol=1e-12)
    for a in ('weights_', 'means_', 'covariances_'):
        np.testing.assert_allclose(getattr(warm, a), getattr(one_go, a), rtol=1e-10, err_msg=a)


def test_warm_start_of_converged_model_stops_quickly():
    gm = GaussianMixture(2, warm_start=True, tol=1e-3, random_state=0).fit(X_OF)
    gm.fit(X_OF)
    assert gm.converged_ and gm.n_iter_ == 1


def test_warm_start_ignores_n_init(capsys):
    gm = GaussianMixture(2, warm_start=True, n_init=5, random_state=0, verbose=1).fit(X_OF)
    assert capsys.readouterr().out.count('Initialization ') == 10      # five runs: a begin and an end line each
    means = gm.means_.copy()
    gm.fit(X_OF)
    assert capsys.readouterr().out.count('Initialization ') == 2       # one run, continuing
    np.testing.assert_allclose(gm.means_, means, rtol=1e-3)


def test_n_init_keeps_the_best_run():
    "n_init runs share one RandomState; the kept run has the highest final lower bound."
    kw = dict(n_components=3, init_params='random', max_iter=8, tol=0.0)
    shared = np.random.RandomState(11)
    singles = [quiet_fit(GaussianMixture(random_state=shared, **kw), X_OF) for _ in range(5)]
    best = quiet_fit(GaussianMixture(n_init=5, random_state=11, **kw), X_OF)
    bounds = [g.lower_bound_ for g in singles]
    assert len(set(bounds)) == 5
    winner = singles[int(np.argmax(bounds))]
    assert best.lower_bound_ == max(bounds)
    np.testing.assert_allclose(best.means_, winner.means_, rtol=1e-12)
    np.testing.assert_allclose(best.trace_.free_energy, winner.trace_.free_energy, rtol=1e-12)
    np.testing.assert_array_equal(best.lower_bounds_, winner.lower_bounds_)


def test_n_init_improves_on_a_single_bad_start():
    kw = dict(n_components=3, init_params='random_from_data', covariance_type='spherical')
    one = quiet_fit(GaussianMixture(random_state=0, **kw), X_BLOBS)
    many = quiet_fit(GaussianMixture(n_init=8, random_state=0, **kw), X_BLOBS)
    assert many.lower_bound_ >= one.lower_bound_


def test_convergence_warning_when_iterations_run_out():
    with pytest.warns(ConvergenceWarning, match='did not converge'):
        gm = GaussianMixture(2, max_iter=2, tol=0.0, random_state=0).fit(X_OF)
    assert not gm.converged_ and gm.n_iter_ == 2


def test_no_warning_when_converged_or_max_iter_zero():
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConvergenceWarning)
        gm = GaussianMixture(2, random_state=0).fit(X_OF)
        assert gm.converged_
        gm0 = GaussianMixture(2, max_iter=0, random_state=0).fit(X_OF)
    assert gm0.n_iter_ == 0 and gm0.lower_bound_ == -np.inf and len(gm0.lower_bounds_) == 0 and len(gm0.trace_) == 0


def test_max_iter_zero_with_full_start_is_complete():
    "Unlike scikit-learn 1.9.1 (AttributeError: covariances_), a start given entirely and max_iter=0 works."
    gm = GaussianMixture(2, max_iter=0, **start_for('full')).fit(X_OF)
    np.testing.assert_allclose(gm.covariances_, np.tile(np.diag([1.0, 100.0]), (2, 1, 1)), rtol=1e-12)
    np.testing.assert_allclose(gm.precisions_, np.tile(np.diag([1.0, 0.01]), (2, 1, 1)), rtol=1e-12)


# --------------------------------------------------------------------------------------- fitted attributes
@pytest.mark.parametrize('covariance_type, shape', [('full', (3, 2, 2)), ('tied', (2, 2)), ('diag', (3, 2)),
                                                    ('spherical', (3,))])
def test_fitted_attributes(covariance_type, shape):
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X_BLOBS)
    assert gm.weights_.shape == (3,) and gm.means_.shape == (3, 2)
    for a in ('covariances_', 'precisions_', 'precisions_cholesky_'):
        assert getattr(gm, a).shape == shape, a
    assert isinstance(gm.lower_bounds_, np.ndarray) and gm.lower_bounds_.shape == (gm.n_iter_,)
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    led = gm.trace_
    assert len(led) == 2 * gm.n_iter_ and list(led.step[:2]) == ['E', 'M']
    np.testing.assert_allclose(led.log_likelihood[led.step == 'E'], gm.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(led.kl_gap[led.step == 'E'], 0, atol=1e-10)
    assert (np.diff(led.free_energy) <= 1e-10).all()
    assert gm.n_features_in_ == 2


def test_fit_predict_matches_fit_then_predict():
    for max_iter in (1, 2, 100):
        a = quiet_fit(GaussianMixture(3, max_iter=max_iter, random_state=0), X_BLOBS)
        labels = GaussianMixture(3, max_iter=max_iter, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', ConvergenceWarning)
            labels = labels.fit_predict(X_BLOBS)
        np.testing.assert_array_equal(labels, a.predict(X_BLOBS))


def test_float32_and_integer_input():
    gm32 = GaussianMixture(2, random_state=0).fit(X_OF.astype(np.float32))
    gm64 = GaussianMixture(2, random_state=0).fit(X_OF)
    np.testing.assert_allclose(gm32.means_, gm64.means_, rtol=1e-4)
    gmi = GaussianMixture(2, random_state=0).fit(np.round(X_OF).astype(int))
    assert np.isfinite(gmi.score(np.round(X_OF)))


def test_verbose_lines_match_sklearn(capsys):
    kw = dict(n_components=2, random_state=0, verbose=1, verbose_interval=1, n_init=2)
    GaussianMixture(**kw).fit(X_OF)
    ours = capsys.readouterr().out
    sklearn.mixture.GaussianMixture(**kw).fit(X_OF)
    theirs = capsys.readouterr().out
    assert ours == theirs and 'Initialization 1' in ours and '  Iteration 3' in ours

    kw.update(verbose=2)
    GaussianMixture(**kw).fit(X_OF)
    ours = capsys.readouterr().out
    sklearn.mixture.GaussianMixture(**kw).fit(X_OF)
    theirs = capsys.readouterr().out
    strip = lambda s: re.sub(r'time lapse [0-9.]+s', 'time lapse Ts', s)
    assert strip(ours) == strip(theirs)


@pytest.mark.parametrize('covariance_type', ['full', 'tied', 'diag', 'spherical'])
def test_offset_data_fit_like_the_data(covariance_type):
    "Old Faithful + 1e8: every type fits, with the log-likelihood of the un-offset data (statistics in fixed frames)."
    X = load_faithful().data
    kw = dict(n_components=3, covariance_type=covariance_type, random_state=0, tol=1e-8, max_iter=500)
    near, far = GaussianMixture(**kw).fit(X), GaussianMixture(**kw).fit(X + 1e8)
    np.testing.assert_allclose(far.lower_bound_, near.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(far.means_ - 1e8, near.means_, atol=1e-6)


def test_reg_covar_not_small_warns():
    X = load_faithful().data
    with pytest.warns(UserWarning, match='reg_covar'): GaussianMixture(2, random_state=0).fit(X * 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        GaussianMixture(2, random_state=0).fit(X)                         # the default is small here: no warning


@pytest.mark.parametrize('covariance_type', ['full', 'tied', 'diag', 'spherical'])
def test_e_steps_on_threads_do_not_interfere(covariance_type):
    "One fitted estimator, E-steps of 8 blocks on a 4-thread pool, many rounds: exactly the serial answers."
    from concurrent.futures import ThreadPoolExecutor
    from klem_nb.base import MixtureEMModel
    X, _ = make_blobs(4000, n_features=3, centers=4, random_state=1)
    gm = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    model, blocks = MixtureEMModel(gm), np.array_split(X, 8)
    serial = [model.e_step(b) for b in blocks]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            for got, want in zip(pool.map(model.e_step, blocks), serial):
                assert (got.log_likelihood, got.expected_log_joint, got.neg_entropy) == \
                       (want.log_likelihood, want.expected_log_joint, want.neg_entropy)
                for key in want.stats: np.testing.assert_array_equal(got.stats[key], want.stats[key])


def test_fit_from_a_given_start():
    "fit(X, start=q0) runs from q0 instead of init_params: the same fit as the k-means start it came from."
    from klem_nb.base import StartingResponsibilities, initial_responsibilities
    X = np.random.default_rng(0).normal(size=(200, 2)) + np.repeat([[0, 0], [6, 6]], 100, axis=0)
    q0 = initial_responsibilities(X, 2, 'kmeans', np.random.RandomState(3))
    np.testing.assert_array_equal(GaussianMixture(2).fit(X, start=q0).means_, GaussianMixture(2, random_state=3).fit(X).means_)
    gm = GaussianMixture(3)
    with pytest.raises(ValueError, match='start holds q_0 for 200 rows and 2 components'): gm.fit(X, start=q0)
    assert not hasattr(gm, 'means_')

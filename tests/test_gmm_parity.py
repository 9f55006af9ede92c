"""Parity of klem_nb.gmm.GaussianMixture with sklearn.mixture.GaussianMixture.

Same starting point, tol, reg_covar and max_iter: weights_, means_, covariances_, precisions_ and lower_bound_
agree to 1e-6, labels exactly, score_samples to 1e-8, and n_iter_ / converged_ are equal, for the four covariance
types on several data sets. The starting point is either given (weights/means/precisions_init) or built by the
same init_params call with the same random_state (n_init=1: with several restarts, two runs that reach the same
optimum can tie to the last bit, and rounding may then pick a different one)."""
import warnings

import numpy as np
import pytest
import sklearn.mixture
from sklearn.datasets import load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning

from klem_nb.datasets import load_faithful
from klem_nb.gmm import GaussianMixture

COVARIANCE_TYPES = ('full', 'tied', 'diag', 'spherical')
PARAM_TOL = 1e-6   # weights, means, covariances, precisions, lower bound(s)
SCORE_TOL = 1e-8   # score_samples


def _datasets():
    rng = np.random.RandomState(0)
    X1, _ = make_blobs(n_samples=300, n_features=1, centers=3, cluster_std=[0.5, 1.0, 0.8], random_state=0)
    X2, _ = make_blobs(n_samples=400, n_features=2, centers=3, cluster_std=[1.0, 2.0, 0.5], random_state=1)
    X2 = X2 @ np.array([[1.0, 0.4], [0.0, 0.7]])                 # correlated clusters
    X5, _ = make_blobs(n_samples=500, n_features=5, centers=4, random_state=2)
    X5 = X5 + rng.normal(scale=0.5, size=X5.shape)
    return {'blobs_d1': (X1, 3), 'blobs_d2': (X2, 3), 'blobs_d5': (X5, 4),
            'faithful': (load_faithful().data, 2), 'iris': (load_iris().data, 3)}


DATASETS = _datasets()


def given_start(X, k, covariance_type, seed=0):
    "A deterministic starting point: k distinct rows as means, uniform weights, precisions from the data's spread."
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    means = X[rng.choice(len(X), size=k, replace=False)]
    cov = np.atleast_2d(np.cov(X.T)) + 1e-3 * np.eye(d)
    prec = np.linalg.inv(cov) * k            # a bit narrower than the whole data
    precisions = {'full': np.tile(prec, (k, 1, 1)), 'tied': prec,
                  'diag': np.tile(np.diag(prec), (k, 1)), 'spherical': np.full(k, np.diag(prec).mean())}[covariance_type]
    return dict(weights_init=np.full(k, 1 / k), means_init=means, precisions_init=precisions)


def fit_both(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        return GaussianMixture(**kw).fit(X), sklearn.mixture.GaussianMixture(**kw).fit(X)


def differences(ours, theirs, X):
    "Largest absolute differences of everything parity covers."
    out = {a: float(np.max(np.abs(np.asarray(getattr(ours, a)) - np.asarray(getattr(theirs, a)))))
           for a in ('weights_', 'means_', 'covariances_', 'precisions_', 'lower_bound_')}
    out['score_samples'] = float(np.max(np.abs(ours.score_samples(X) - theirs.score_samples(X))))
    return out


def assert_parity(ours, theirs, X):
    for a in ('weights_', 'means_', 'covariances_', 'precisions_', 'precisions_cholesky_'):
        np.testing.assert_allclose(getattr(ours, a), getattr(theirs, a), rtol=PARAM_TOL, atol=PARAM_TOL, err_msg=a)
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=PARAM_TOL, atol=PARAM_TOL)
    np.testing.assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=PARAM_TOL, atol=PARAM_TOL)
    assert (ours.n_iter_, ours.converged_) == (theirs.n_iter_, theirs.converged_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=SCORE_TOL, atol=SCORE_TOL)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(ours.score(X), theirs.score(X), rtol=SCORE_TOL)
    np.testing.assert_allclose([ours.bic(X), ours.aic(X)], [theirs.bic(X), theirs.aic(X)], rtol=1e-8)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('name', DATASETS)
def test_parity_given_start(name, covariance_type):
    X, k = DATASETS[name]
    ours, theirs = fit_both(X, n_components=k, covariance_type=covariance_type, **given_start(X, k, covariance_type))
    assert_parity(ours, theirs, X)
    np.testing.assert_array_equal(ours.fit_predict(X), theirs.fit_predict(X))


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('name', DATASETS)
def test_parity_kmeans_start(name, covariance_type):
    X, k = DATASETS[name]
    ours, theirs = fit_both(X, n_components=k, covariance_type=covariance_type, random_state=0)
    assert_parity(ours, theirs, X)


@pytest.mark.parametrize('init_params', ['k-means++', 'random', 'random_from_data'])
@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('name', ['blobs_d2', 'iris'])
def test_parity_other_starts(name, covariance_type, init_params):
    X, k = DATASETS[name]
    ours, theirs = fit_both(X, n_components=k, covariance_type=covariance_type, init_params=init_params,
                            random_state=3, reg_covar=1e-4)
    if covariance_type == 'tied' and init_params in ('k-means++', 'random_from_data'):
        # A deliberate departure (nbs/11_gmm.ipynb): scikit-learn's tied start from one-row seeds adds the uncentred
        # second moment of every row the seeds leave out; ours uses only the seeds' statistics, in a fixed frame.
        assert ours.n_iter_ >= 1 and np.isfinite(ours.lower_bound_)
        with pytest.raises(AssertionError): assert_parity(ours, theirs, X)
        return
    assert_parity(ours, theirs, X)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_parity_not_converged(covariance_type):
    "Both run out of iterations (tol=0): same path, same warning, converged_ False."
    X, k = DATASETS['iris']
    kw = dict(n_components=k, covariance_type=covariance_type, tol=0.0, max_iter=4, random_state=0)
    with pytest.warns(ConvergenceWarning):
        ours = GaussianMixture(**kw).fit(X)
    with pytest.warns(ConvergenceWarning):
        theirs = sklearn.mixture.GaussianMixture(**kw).fit(X)
    assert ours.n_iter_ == 4 and not ours.converged_
    assert_parity(ours, theirs, X)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_parity_tol_and_reg_covar(covariance_type):
    X, k = DATASETS['blobs_d5']
    ours, theirs = fit_both(X, n_components=k, covariance_type=covariance_type, tol=1e-6, reg_covar=1e-2,
                            random_state=1)
    assert_parity(ours, theirs, X)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_parity_warm_start(covariance_type):
    "Two consecutive fits with warm_start on different data walk the same path."
    X, k = DATASETS['blobs_d2']
    kw = dict(n_components=k, covariance_type=covariance_type, warm_start=True, max_iter=3, random_state=0)
    ours, theirs = GaussianMixture(**kw), sklearn.mixture.GaussianMixture(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        for part in (X[:200], X[200:], X):
            ours.fit(part); theirs.fit(part)
            assert_parity(ours, theirs, part)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
def test_parity_sample(covariance_type):
    X, k = DATASETS['blobs_d2']
    ours, theirs = fit_both(X, n_components=k, covariance_type=covariance_type, random_state=0)
    Xo, yo = ours.sample(200)
    Xt, yt = theirs.sample(200)
    np.testing.assert_array_equal(yo, yt)
    np.testing.assert_allclose(Xo, Xt, rtol=1e-6, atol=1e-6)


def test_parity_n_init_random_state_stream():
    "Restarts consume one RandomState as scikit-learn's do (here the best runs do not tie)."
    X, k = DATASETS['iris']
    ours, theirs = fit_both(X, n_components=k, covariance_type='diag', n_init=4, init_params='random', random_state=5)
    assert_parity(ours, theirs, X)


def test_parity_max_iter_zero():
    "max_iter=0 keeps the start, as scikit-learn (which needs the start built from data for covariances_)."
    X, k = DATASETS['faithful']
    ours, theirs = fit_both(X, n_components=k, max_iter=0, random_state=0)
    for a in ('weights_', 'means_', 'covariances_', 'precisions_'):
        np.testing.assert_allclose(getattr(ours, a), getattr(theirs, a), rtol=1e-10)
    assert ours.n_iter_ == theirs.n_iter_ == 0 and ours.lower_bound_ == theirs.lower_bound_ == -np.inf
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize('name', list(DATASETS))
def test_kmeans_start_is_kmeans_restart_after_restart(name):
    "The k-means start (data prepared once per fit, `KMeansStart`) gives KMeans's labels for every restart of one stream."
    from sklearn.cluster import KMeans
    from klem_nb.base import KMeansStart
    X, k = DATASETS[name]
    w = np.random.RandomState(1).randint(0, 3, size=len(X)).astype(float)
    for X_, w_ in ((X, None), (X.astype(np.float32), None), (np.asfortranarray(X), None), (X, w)):
        prepared, ours, theirs = KMeansStart(X_, w_), np.random.RandomState(3), np.random.RandomState(3)
        for _ in range(4):
            np.testing.assert_array_equal(prepared.labels(k, ours),
                                          KMeans(k, n_init=1, random_state=theirs).fit(X_, sample_weight=w_).labels_)


def test_kmeans_start_warns_as_kmeans():
    "Fewer distinct clusters than asked (duplicate rows): KMeans's ConvergenceWarning, with its words."
    from klem_nb.base import KMeansStart
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(2\) found smaller than n_clusters \(3\)"):
        KMeansStart(X).labels(3, np.random.RandomState(0))


def test_kmeans_start_falls_back_to_kmeans_when_routines_move(monkeypatch):
    "If scikit-learn's private k-means routines are gone or their signatures change, the start is KMeans itself."
    import sklearn.cluster._kmeans as km
    from sklearn.cluster import KMeans
    from klem_nb import base
    X, k = DATASETS['iris']
    monkeypatch.setattr(km, '_kmeans_single_lloyd', lambda X, sample_weight, centers: None)   # a changed signature
    assert base._kmeans_routines() is None
    start = base.KMeansStart(X)
    assert start.routines is None
    monkeypatch.undo()                                              # KMeans itself needs the real routine
    np.testing.assert_array_equal(start.labels(k, np.random.RandomState(0)),
                                  KMeans(k, n_init=1, random_state=np.random.RandomState(0)).fit(X).labels_)
    monkeypatch.delattr(km, '_kmeans_plusplus')
    assert base._kmeans_routines() is None
    monkeypatch.undo()
    assert base._kmeans_routines() is not None


@pytest.mark.parametrize('covariance_type', ['full', 'tied', 'diag', 'spherical'])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_label_start_statistics_equal_the_one_hot_pass(covariance_type, dtype):
    "The k-means start's statistics from the labels (rows grouped, O(nd)) equal the general pass over one-hot q_0."
    from klem_nb.base import StartingResponsibilities
    from klem_nb.gaussian import GaussianKernels
    from klem_nb.gmm import GaussianMixture
    rng = np.random.default_rng(7)
    X = (rng.normal(size=(3000, 3)) * [1, 5, 0.2] + 100 + rng.integers(0, 3, size=(3000, 1)) * 4).astype(dtype)
    labels = rng.integers(0, 4, size=len(X))
    w = rng.integers(0, 3, size=len(X)).astype(float)
    gm = GaussianMixture(4, covariance_type=covariance_type)
    gm._dtype = dtype
    q0 = StartingResponsibilities(len(X), 4, X.dtype, labels=labels)
    for weights in (None, w):
        first = gm._start_stats(X, q0, weights, lambda Xb, r: dict(nk=r.sum(0), sx=r.T @ Xb))
        frames = first['sx'] / (first['nk'] + 10 * np.finfo(float).eps)[:, None]   # the general pass's frames
        fast, fast_frames = gm._label_stats(X, q0, weights)
        np.testing.assert_allclose(fast_frames, frames, rtol=1e-12 if dtype == np.float64 else 1e-6)
        kern = GaussianKernels(covariance_type, np.full(4, 0.25), fast_frames, None, frames=fast_frames)
        slow = gm._start_stats(X, q0, weights, kern.stats)
        assert fast.keys() == slow.keys()
        scale = len(X) * float(np.abs(X).max())                            # Σ r (x - F_j) is near 0: absolute in X's units
        for key in slow: np.testing.assert_allclose(fast[key], slow[key], rtol=1e-9, atol=1e-12 * scale if key == 'sum_x' else 0)
    seeded = StartingResponsibilities(len(X), 4, X.dtype, seeds=np.arange(4))
    assert gm._label_stats(X, seeded, None) is None                          # not one-hot by labels: the general pass
    assert gm._label_stats(X, StartingResponsibilities(len(X), 4, X.dtype, labels=labels % 3), None) is None   # an empty component

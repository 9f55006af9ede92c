"""HMMs on Dask arrays chunked by sequence (nbs/14_hmm.ipynb, "Dask: chunks of whole sequences"): the fit, the ledger
and every prediction equal the in-memory ones under three schedulers, whatever the chunks; bad input is refused."""
import pickle
import warnings

import numpy as np
import pytest

da = pytest.importorskip('dask.array')
import dask  # noqa: E402

from klem_nb.hmm import CategoricalHMM, GaussianHMM, PoissonHMM  # noqa: E402
import klem_nb.hmm as H  # noqa: E402

RTOL = 1e-10


def _chain(rng, k, n, stay=0.9):
    A = np.full((k, k), (1 - stay) / (k - 1)); np.fill_diagonal(A, stay)
    z = np.empty(n, dtype=int); z[0] = 0
    u = rng.random(n)
    for t in range(1, n): z[t] = (np.cumsum(A[z[t - 1]]) > u[t]).argmax()
    return z


def _lengths(rng, m=25):
    return rng.integers(15, 90, m)


def gaussian_data(seed=0, d=2):
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng)
    z = _chain(rng, 3, lengths.sum())
    return np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 3.0]])[z][:, :d] + rng.normal(size=(len(z), d)), lengths


def categorical_data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng)
    z = _chain(rng, 2, lengths.sum())
    E = np.array([[0.3, 0.3, 0.2, 0.1, 0.1], [0.05, 0.1, 0.15, 0.3, 0.4]])
    u = rng.random(len(z))
    return (np.cumsum(E[z], axis=1) > u[:, None]).argmax(1)[:, None], lengths


def poisson_data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng)
    z = _chain(rng, 2, lengths.sum())
    return rng.poisson(np.array([[2.0, 7.0], [9.0, 1.0]])[z]).astype(float), lengths


def hand_set(kind, **kw):
    "An estimator of `kind` with a hand-set start (init_params='')."
    base = dict(init_params='', n_iter=8, tol=0, **kw)
    if kind.startswith('gaussian'):
        ct = kind.split('-')[1]
        est = GaussianHMM(3, covariance_type=ct, **base)
        est.means_ = np.array([[0.5, 0.2], [2.0, 1.5], [-1.0, 2.0]])
        est.covars_ = {'spherical': np.array([1.0, 1.5, 0.8]), 'diag': np.array([[1.0, 2.0], [1.5, 0.7], [0.8, 1.1]]),
                       'full': np.array([[[1.0, 0.2], [0.2, 1.5]]] * 3), 'tied': np.array([[1.2, 0.1], [0.1, 0.9]])}[ct]
        k = 3
    elif kind == 'categorical':
        est, k = CategoricalHMM(2, **base), 2
        est.emissionprob_ = np.array([[0.25, 0.25, 0.2, 0.15, 0.15], [0.1, 0.15, 0.2, 0.25, 0.3]])
    else:
        est, k = PoissonHMM(2, **base), 2
        est.lambdas_ = np.array([[3.0, 5.0], [6.0, 2.0]])
    est.startprob_ = np.full(k, 1 / k)
    est.transmat_ = np.full((k, k), 0.2 / (k - 1)) + np.eye(k) * (0.8 - 0.2 / (k - 1))
    return est


DATA = {'gaussian': gaussian_data, 'categorical': categorical_data, 'poisson': poisson_data}
PARAMS = {'gaussian': ('startprob_', 'transmat_', 'means_', 'covars_'), 'categorical': ('startprob_', 'transmat_', 'emissionprob_'),
          'poisson': ('startprob_', 'transmat_', 'lambdas_')}


def assert_same_fit(a, b, family, rtol=RTOL):
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
    for name in PARAMS[family]:
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol, atol=1e-300, err_msg=name)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=rtol)
    for field in ('log_likelihood', 'free_energy', 'kl_gap'):
        np.testing.assert_allclose(b.trace_[field], a.trace_[field], rtol=rtol, atol=1e-9, err_msg=field)


@pytest.fixture(scope='module')
def client():
    distributed = pytest.importorskip('distributed')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c: yield c


def on_scheduler(scheduler, request, fn):
    if scheduler == 'distributed':
        request.getfixturevalue('client')
        return fn()
    with dask.config.set(scheduler=scheduler): return fn()


@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('scheduler', ['synchronous', 'threads', 'distributed'])
@pytest.mark.parametrize('kind', ['gaussian-diag', 'gaussian-full', 'categorical', 'poisson'])
def test_dask_fit_equals_in_memory_fit(kind, scheduler, weighted, request):
    family = kind.split('-')[0]
    X, lengths = DATA[family]()
    w = np.random.default_rng(1).integers(0, 4, len(lengths)).astype(float) if weighted else None
    ref = hand_set(kind).fit(X, lengths, sample_weight=w)
    Xd = da.from_array(X, chunks=(157, 1))                     # boundaries inside sequences, columns split
    got = on_scheduler(scheduler, request, lambda: hand_set(kind).fit(Xd, lengths, sample_weight=w))
    assert_same_fit(ref, got, family)


@pytest.mark.parametrize('ct', ['spherical', 'tied'])
def test_other_covariance_types(ct):
    X, lengths = gaussian_data(2)
    ref = hand_set(f'gaussian-{ct}').fit(X, lengths)
    with dask.config.set(scheduler='synchronous'):
        assert_same_fit(ref, hand_set(f'gaussian-{ct}').fit(da.from_array(X, chunks=300), lengths), 'gaussian')


@pytest.mark.parametrize('family', ['gaussian', 'categorical', 'poisson'])
def test_default_start_is_the_in_memory_start(family):
    "All rows up to INIT_SAMPLE_ROWS: k-means, moments and symbols see what the in-memory fit sees."
    X, lengths = DATA[family](3)
    make = {'gaussian': lambda: GaussianHMM(3, random_state=0, n_iter=10, tol=0),
            'categorical': lambda: CategoricalHMM(2, random_state=0, n_iter=10, tol=0),
            'poisson': lambda: PoissonHMM(2, random_state=0, n_iter=10, tol=0)}[family]
    ref = make().fit(X, lengths)
    with dask.config.set(scheduler='threads'): got = make().fit(da.from_array(X, chunks=200), lengths)
    assert_same_fit(ref, got, family)
    if family == 'categorical': assert got.n_features == ref.n_features == 5


def test_start_from_a_sample_of_a_large_X(monkeypatch):
    "Above INIT_SAMPLE_ROWS the start comes from a sample: a different start, a sensible fit, the symbols from all rows."
    X, lengths = categorical_data(4)
    X[-1] = 7                                                  # the largest symbol, once, in the last row
    monkeypatch.setattr(H, 'INIT_SAMPLE_ROWS', 100)
    with dask.config.set(scheduler='synchronous'):
        got = CategoricalHMM(2, random_state=0, n_iter=5).fit(da.from_array(X, chunks=300), lengths)
    assert got.emissionprob_.shape == (2, 8)
    Xg, lg = gaussian_data(4)
    with dask.config.set(scheduler='synchronous'):
        g = GaussianHMM(3, random_state=0, n_iter=200, tol=1e-4).fit(da.from_array(Xg, chunks=300), lg)
    ref = GaussianHMM(3, random_state=0, n_iter=200, tol=1e-4).fit(Xg, lg)
    assert g.lower_bounds_[0] != ref.lower_bounds_[0]                      # another start...
    np.testing.assert_allclose(g.score(Xg, lg), ref.score(Xg, lg), rtol=1e-3)   # ...much the same fit


def test_chunks_on_sequence_boundaries_stay_and_others_move():
    X, lengths = poisson_data()
    starts = np.r_[0, np.cumsum(lengths)]
    aligned = da.from_array(X, chunks=((int(starts[5]), int(starts[12] - starts[5]), int(starts[-1] - starts[12])), 2))
    U = H._dask_sequences(aligned, lengths)
    assert U.X.chunks == aligned.chunks and list(U.units) == [0, 5, 12, len(lengths)]
    np.testing.assert_array_equal(U.parts[1], starts[5:13] - starts[5])   # chunk 1's own sequence starts
    U = H._dask_sequences(da.from_array(X, chunks=(157, 2)), lengths)
    cuts = np.cumsum((0,) + U.X.chunks[0])
    assert np.isin(cuts, starts).all() and len(cuts) > 5
    # one long sequence spanning several chunks becomes one chunk; lengths=None is one sequence
    U = H._dask_sequences(da.from_array(X, chunks=(157, 2)), None)
    assert U.X.chunks[0] == (len(X),) and list(U.units) == [0, 1]


def test_cutting_a_sequence_would_change_the_answer():
    "The check above can fail: a fit whose sequences are cut at the original chunk boundaries is a different fit."
    X, lengths = poisson_data()
    starts = np.r_[0, np.cumsum(lengths)]
    cuts = np.arange(157, len(X), 157)
    cut = np.diff(np.union1d(starts, np.r_[cuts, len(X)]))
    right, wrong = hand_set('poisson').fit(X, lengths), hand_set('poisson').fit(X, cut)
    assert abs(wrong.lower_bounds_[-1] - right.lower_bounds_[-1]) > 1e-6 * abs(right.lower_bounds_[-1])   # far above 1e-10
    with dask.config.set(scheduler='synchronous'):
        assert_same_fit(right, hand_set('poisson').fit(da.from_array(X, chunks=157), lengths), 'poisson')


def test_weights_as_a_dask_array_and_zero_weights():
    "One weight per sequence, numpy or Dask; integer weights are repeated sequences, zero drops one, as in memory."
    X, lengths = categorical_data(9)
    w = np.r_[0.0, 2.0, np.ones(len(lengths) - 2)]
    ref = hand_set('categorical').fit(X, lengths, sample_weight=w)
    with dask.config.set(scheduler='synchronous'):
        got = hand_set('categorical').fit(da.from_array(X, chunks=250), da.from_array(lengths, chunks=10),
                                          sample_weight=da.from_array(w, chunks=7))
    assert_same_fit(ref, got, 'categorical')


def test_one_sequence():
    X, _ = gaussian_data(5)
    ref = hand_set('gaussian-diag').fit(X)
    with dask.config.set(scheduler='synchronous'):
        got = hand_set('gaussian-diag').fit(da.from_array(X, chunks=250))
        assert_same_fit(ref, got, 'gaussian')
        np.testing.assert_allclose(got.score(da.from_array(X, chunks=250)), ref.score(X), rtol=1e-12)


def check_predictions(est, X, lengths):
    "Every prediction of a Dask X equals the in-memory one: per-row answers lazy, log-probabilities floats."
    Xd = da.from_array(X, chunks=(211, 1))
    for method in ('predict', 'predict_proba'):
        out = getattr(est, method)(Xd, lengths)
        assert isinstance(out, da.Array), method
        np.testing.assert_allclose(out.compute(), getattr(est, method)(X, lengths), rtol=1e-10, atol=1e-14, err_msg=method)
    score = est.score(Xd, lengths)
    assert isinstance(score, float)
    np.testing.assert_allclose(score, est.score(X, lengths), rtol=1e-12)
    lp, post = est.score_samples(Xd, lengths)
    assert isinstance(lp, float) and isinstance(post, da.Array)
    np.testing.assert_allclose(lp, est.score(X, lengths), rtol=1e-12)
    for algorithm in ('viterbi', 'map'):
        v, path = est.decode(Xd, lengths, algorithm=algorithm)
        v0, path0 = est.decode(X, lengths, algorithm=algorithm)
        assert isinstance(v, float) and isinstance(path, da.Array)
        np.testing.assert_allclose(v, v0, rtol=1e-12)
        np.testing.assert_array_equal(path.compute(), path0)


@pytest.mark.parametrize('family', ['gaussian', 'categorical', 'poisson'])
def test_predictions_lazy_and_equal(family):
    X, lengths = DATA[family](6)
    est = hand_set('gaussian-diag' if family == 'gaussian' else family).fit(X, lengths)
    with dask.config.set(scheduler='threads'): check_predictions(est, X, lengths)


def test_predictions_on_a_cluster(client):
    X, lengths = gaussian_data(8)
    check_predictions(hand_set('gaussian-full').fit(X, lengths), X, lengths)


def test_not_fitted():
    from sklearn.exceptions import NotFittedError
    X, lengths = poisson_data()
    for method in ('score', 'predict', 'predict_proba'):
        with pytest.raises(NotFittedError): getattr(PoissonHMM(2), method)(da.from_array(X, chunks=300), lengths)


def test_lazy_predictions_keep_the_parameters_they_were_made_with():
    X, lengths = poisson_data()
    est = hand_set('poisson').fit(X, lengths)
    with dask.config.set(scheduler='synchronous'):
        lazy = est.predict_proba(da.from_array(X, chunks=300), lengths)
        before = est.predict_proba(X, lengths)
        est.lambdas_ = est.lambdas_[::-1].copy()
        np.testing.assert_allclose(lazy.compute(), before, rtol=1e-12)


def test_missing_rows_and_integer_symbols_as_floats():
    X, lengths = gaussian_data(7)
    X[[3, 100, 400]] = np.nan
    ref = hand_set('gaussian-full').fit(X, lengths)
    with dask.config.set(scheduler='synchronous'):
        assert_same_fit(ref, hand_set('gaussian-full').fit(da.from_array(X, chunks=180), lengths), 'gaussian')
    C, lc = categorical_data(7)
    ref = hand_set('categorical').fit(C, lc)
    with dask.config.set(scheduler='synchronous'):
        assert_same_fit(ref, hand_set('categorical').fit(da.from_array(C.astype(float), chunks=180), lc), 'categorical')


def test_bad_input_names_the_problem_and_leaves_the_estimator():
    X, lengths = poisson_data()
    Xd = da.from_array(X, chunks=200)
    est = hand_set('poisson').fit(X, lengths)
    before = {name: getattr(est, name).copy() for name in PARAMS['poisson'] + ('lower_bounds_',)}
    with dask.config.set(scheduler='synchronous'):
        with pytest.raises(ValueError, match='lengths sum to'): est.fit(Xd, lengths[:-1])
        bad = X.copy(); bad[650, 1] = 2.5
        with pytest.raises(ValueError, match='counts.*Dask chunk from sequence'): est.fit(da.from_array(bad, chunks=200), lengths)
        neg = X.copy(); neg[10] = -1
        with pytest.raises(ValueError, match='counts'): est.fit(da.from_array(neg, chunks=200), lengths)
        with pytest.raises(ValueError, match='2-D'): est.fit(Xd[:, 0], lengths)
        with pytest.raises(ValueError, match='sample_weight'): est.fit(Xd, lengths, sample_weight=np.ones(3))
        with pytest.raises(ValueError, match='lengths sum to'): est.predict(Xd, lengths[1:])
        g = hand_set('gaussian-diag')
        Xg, lg = gaussian_data()
        Xg[lg[0]:lg[0] + lg[1]] = np.nan                       # sequence 1 only missing rows
        with pytest.raises(ValueError, match='only missing'): g.fit(da.from_array(Xg, chunks=100), lg)
        C, lc = categorical_data()
        cat = hand_set('categorical')
        C[900] = 9
        with pytest.raises(ValueError, match='symbols must lie'): cat.fit(da.from_array(C, chunks=100), lc)
    for name, v in before.items(): np.testing.assert_array_equal(getattr(est, name), v, err_msg=name)


def test_model_pickles_small_and_fits_on_worker_processes():
    "The E-step's model travels to worker processes as (estimator, θ); the estimator holds no data."
    X, lengths = poisson_data()
    est = hand_set('poisson').fit(X, lengths)
    model = H._DaskHMMModel(est, est._theta())
    blob = pickle.dumps(model)
    assert len(blob) < 10_000 and b'dask' not in blob
    copy = pickle.loads(blob)
    S = H.Sequences(X, np.r_[0, np.cumsum(lengths)])
    a, b = model.e_step(S), copy.e_step(S)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-14)


@pytest.mark.slow
def test_distributed_with_processes():
    distributed = pytest.importorskip('distributed')
    X, lengths = poisson_data()
    ref = hand_set('poisson').fit(X, lengths)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with distributed.Client(cluster):
                got = hand_set('poisson').fit(da.from_array(X, chunks=300), lengths)
    assert_same_fit(ref, got, 'poisson')


def test_a_failed_task_is_retried_and_the_answer_unchanged(client, monkeypatch):
    "Under a distributed client the engine retries a failed chunk task: the fit is the in-memory one all the same."
    X, lengths = poisson_data()
    ref = hand_set('poisson').fit(X, lengths)
    failed, e_step = [], H._DaskHMMModel.e_step
    def flaky(self, S, sample_weight=None, stats=True):
        if not failed:
            failed.append(1)
            raise RuntimeError('a worker lost its chunk')
        return e_step(self, S, sample_weight, stats)
    monkeypatch.setattr(H._DaskHMMModel, 'e_step', flaky)
    got = hand_set('poisson').fit(da.from_array(X, chunks=300), lengths)
    assert failed == [1]
    assert_same_fit(ref, got, 'poisson')

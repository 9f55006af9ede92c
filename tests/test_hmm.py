"Parity of klem_nb.hmm with hmmlearn 0.3.3 from hand-set starts, bad input, and what hmmlearn lacks (weights, NaN rows, ledger, threads)."
import logging

import numpy as np
import pytest
from sklearn.base import clone

from klem_nb.hmm import GaussianHMM, CategoricalHMM, PoissonHMM
from klem_nb.em import FreeEnergyIncreaseError

hmm = pytest.importorskip('hmmlearn.hmm')
logging.getLogger('hmmlearn').setLevel(logging.ERROR)
RTOL = 1e-8

try: import numba  # noqa: F401
except ImportError: numba = None
PATHS = ['numba', 'numpy']

@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    "Run a test on the compiled E-step and on the numpy one (klem_nb.hmm.USE_NUMBA); the compiled one needs numba."
    import klem_nb.hmm as H
    if request.param == 'numba' and numba is None: pytest.skip('numba is not installed')
    monkeypatch.setattr(H, 'USE_NUMBA', request.param == 'numba')
    assert (H._compiled() is not None) == (request.param == 'numba')
    return request.param

def _chain(rng, k, n):
    A = np.full((k, k), 0.1 / (k - 1)); np.fill_diagonal(A, 0.9)
    z = [0]
    for _ in range(n - 1): z.append(rng.choice(k, p=A[z[-1]]))
    return np.array(z)

def _start(k, rng):
    A = rng.dirichlet(np.ones(k) * 3, size=k) + np.eye(k) * 2
    return rng.dirichlet(np.ones(k) * 3), A / A.sum(1, keepdims=True)

def _gauss_data(seed=0, k=3, d=2, lengths=(120, 80, 80, 50)):
    rng = np.random.default_rng(seed)
    z = _chain(rng, k, sum(lengths))
    mu = rng.normal(scale=3, size=(k, d))
    X = mu[z] + rng.normal(size=(len(z), d)) @ np.diag(rng.uniform(0.5, 1.5, d))
    return X, np.array(lengths), rng

def _gauss_start(ct, k, d, rng, X):
    sp, A = _start(k, rng)
    means = X[rng.choice(len(X), k, replace=False)] + 0.1
    cv = np.cov(X.T)
    covars = {'spherical': np.full(k, cv.trace() / d) * rng.uniform(0.8, 1.2, k), 'diag': np.tile(np.diag(cv), (k, 1)) * rng.uniform(0.8, 1.2, (k, d)),
              'full': np.stack([cv * s for s in rng.uniform(0.8, 1.2, k)]), 'tied': cv}[ct]
    return dict(startprob_=sp, transmat_=A, means_=means, covars_=covars)

def _set(est, params):
    for k, v in params.items(): setattr(est, k, np.array(v, copy=True))
    return est

def _compare(ours, theirs, X, lengths, names):
    for n in names: np.testing.assert_allclose(getattr(ours, n), getattr(theirs, n), rtol=RTOL, atol=1e-12, err_msg=n)
    np.testing.assert_allclose(ours.lower_bounds_, list(theirs.monitor_.history), rtol=RTOL)
    np.testing.assert_allclose(ours.score(X, lengths), theirs.score(X, lengths), rtol=RTOL)
    lp, post = ours.score_samples(X, lengths)
    lp2, post2 = theirs.score_samples(X, lengths)
    np.testing.assert_allclose(post, post2, rtol=RTOL, atol=1e-12)
    for alg in ('viterbi', 'map'):
        a, pa = ours.decode(X, lengths, algorithm=alg)
        b, pb = theirs.decode(X, lengths, algorithm=alg)
        np.testing.assert_allclose(a, b, rtol=RTOL)
        np.testing.assert_array_equal(pa, pb)

@pytest.mark.parametrize('ct', ['spherical', 'diag', 'full', 'tied'])
@pytest.mark.parametrize('implementation', ['log', 'scaling'])
def test_gaussian_parity(ct, implementation, path):
    X, lengths, rng = _gauss_data()
    start = _gauss_start(ct, 3, 2, rng, X)
    kw = dict(n_components=3, covariance_type=ct, init_params='', n_iter=15, tol=1e-6, implementation=implementation)
    ours = _set(GaussianHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.GaussianHMM(**kw), start).fit(X, lengths)
    assert len(ours.lower_bounds_) == len(theirs.monitor_.history)
    if ct == 'spherical':      # hmmlearn 0.3.3 keeps fitted spherical variances as (k, d) and its covars_ then has k*d matrices
        np.testing.assert_allclose(np.broadcast_to(ours._covars_[:, None], theirs._covars_.shape), theirs._covars_, rtol=RTOL)
        _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'means_'])
    else: _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'means_', 'covars_'])

def test_gaussian_parity_priors():
    X, lengths, rng = _gauss_data(1)
    start = _gauss_start('full', 3, 2, rng, X)
    kw = dict(n_components=3, covariance_type='full', init_params='', n_iter=8, tol=0, startprob_prior=2.0, transmat_prior=1.5,
              means_prior=0.5, means_weight=2.0, covars_prior=0.3, covars_weight=4)
    ours = _set(GaussianHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.GaussianHMM(**kw), start).fit(X, lengths)
    _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'means_', 'covars_'])

def _cat_data(seed=0, k=2, nf=4, lengths=(100, 60, 40)):
    rng = np.random.default_rng(seed)
    z = _chain(rng, k, sum(lengths))
    E = rng.dirichlet(np.ones(nf), size=k)
    X = np.array([rng.choice(nf, p=E[s]) for s in z])[:, None]
    sp, A = _start(k, rng)
    return X, np.array(lengths), dict(startprob_=sp, transmat_=A, emissionprob_=rng.dirichlet(np.ones(nf) * 2, size=k))

@pytest.mark.parametrize('prior', [1.0, 1.7])
def test_categorical_parity(prior, path):
    X, lengths, start = _cat_data()
    kw = dict(n_components=2, init_params='', n_iter=20, tol=1e-7, emissionprob_prior=prior)
    ours = _set(CategoricalHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.CategoricalHMM(**kw), start).fit(X, lengths)
    _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'emissionprob_'])

def _pois_data(seed=0, k=2, d=2, lengths=(90, 70)):
    rng = np.random.default_rng(seed)
    z = _chain(rng, k, sum(lengths))
    lam = rng.uniform(1, 12, size=(k, d))
    X = rng.poisson(lam[z]).astype(float)
    sp, A = _start(k, rng)
    return X, np.array(lengths), dict(startprob_=sp, transmat_=A, lambdas_=lam * rng.uniform(0.7, 1.3, (k, d)))

@pytest.mark.parametrize('prior', [(0.0, 0.0), (2.0, 0.5)])
def test_poisson_parity(prior, path):
    X, lengths, start = _pois_data()
    kw = dict(n_components=2, init_params='', n_iter=20, tol=1e-7, lambdas_prior=prior[0], lambdas_weight=prior[1])
    ours = _set(PoissonHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.PoissonHMM(**kw), start).fit(X, lengths)
    _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'lambdas_'])

def test_default_tol_stops_like_hmmlearn():
    "With hmmlearn's defaults (n_iter=10, tol=1e-2) both stop at the same iteration."
    X, lengths, rng = _gauss_data(2)
    start = _gauss_start('diag', 3, 2, rng, X)
    ours = _set(GaussianHMM(n_components=3, init_params=''), start).fit(X, lengths)
    theirs = _set(hmm.GaussianHMM(n_components=3, init_params=''), start).fit(X, lengths)
    assert len(ours.lower_bounds_) == len(theirs.monitor_.history)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=RTOL)

def test_sample_matches_hmmlearn():
    X, lengths, start = _pois_data()
    ours = _set(PoissonHMM(n_components=2), start)
    theirs = _set(hmm.PoissonHMM(n_components=2), start)
    a, za = ours.sample(50, random_state=3)
    b, zb = theirs.sample(50, random_state=3)
    np.testing.assert_array_equal(za, zb); np.testing.assert_array_equal(a, b)

def test_clone_and_params():
    est = GaussianHMM(n_components=4, covariance_type='full', n_iter=50, tol=1e-4)
    c = clone(est)
    assert c.get_params() == est.get_params() and c.n_components == 4

# ---- bad input ----
def _fitted_pois():
    X, lengths, start = _pois_data()
    return X, lengths, start

def test_lengths_must_sum():
    X, lengths, start = _pois_data()
    est = _set(PoissonHMM(n_components=2, init_params=''), start)
    with pytest.raises(ValueError, match='sum to len'): est.fit(X, [10, 20])
    with pytest.raises(ValueError, match='positive'): est.fit(X, [len(X), 0])

@pytest.mark.parametrize('bad', [-1.0, 2.5])
def test_poisson_counts(bad):
    X, lengths, start = _pois_data()
    X[3, 0] = bad
    with pytest.raises(ValueError, match='counts'): _set(PoissonHMM(n_components=2, init_params=''), start).fit(X, lengths)

def test_symbols_out_of_range():
    X, lengths, start = _cat_data()
    X[5, 0] = 4
    with pytest.raises(ValueError, match='symbols must lie in 0..n_features-1'):
        _set(CategoricalHMM(n_components=2, init_params=''), start).fit(X, lengths)
    X[5, 0] = -1
    with pytest.raises(ValueError, match='symbols'): _set(CategoricalHMM(n_components=2, init_params=''), start).fit(X, lengths)

@pytest.mark.parametrize('name', ['startprob_', 'transmat_'])
def test_rows_must_sum_to_one(name):
    X, lengths, start = _pois_data()
    start[name] = start[name] * 1.1
    est = _set(PoissonHMM(n_components=2, init_params=''), start)
    with pytest.raises(ValueError, match=f'{name} must sum to 1'): est.fit(X, lengths)
    assert not hasattr(est, 'lower_bounds_')           # a failed fit leaves the estimator as it was

def test_all_nan_sequence():
    X, lengths, rng = _gauss_data()
    X[lengths[0]:lengths[0] + lengths[1]] = np.nan
    est = _set(GaussianHMM(n_components=3, init_params=''), _gauss_start('diag', 3, 2, rng, X[:100]))
    with pytest.raises(ValueError, match='sequence 1 has only missing'): est.fit(X, lengths)

def test_partial_nan_row():
    X, lengths, rng = _gauss_data()
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match='partly NaN'): GaussianHMM(n_components=3).fit(X, lengths)

# ---- beyond hmmlearn ----
def test_integer_weights_repeat_sequences():
    X, lengths, rng = _gauss_data()
    start = _gauss_start('full', 3, 2, rng, X)
    w = np.array([2, 0, 1, 3])
    seqs = np.split(X, np.cumsum(lengths)[:-1])
    Xr = np.concatenate([s for s, c in zip(seqs, w) for _ in range(c)])
    lr = np.concatenate([[len(s)] * c for s, c in zip(seqs, w)])
    kw = dict(n_components=3, covariance_type='full', init_params='', n_iter=10, tol=0, covars_prior=0)
    a = _set(GaussianHMM(**kw), start).fit(X, lengths, sample_weight=w)
    b = _set(GaussianHMM(**kw), start).fit(Xr, lr)
    for n in ('startprob_', 'transmat_', 'means_', 'covars_'): np.testing.assert_allclose(getattr(a, n), getattr(b, n), rtol=1e-10)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-12)

def test_nan_rows_have_emission_factor_one():
    "A missing row contributes factor 1: the score equals the chain with that step's emission summed out."
    X, lengths, start = _pois_data()
    est = _set(PoissonHMM(n_components=2), start)
    Xm = X.copy(); Xm[10] = np.nan
    # brute force: p(x without row 10) = Σ over all rows-10 values is 1, so replace the emission by 1 in the forward pass
    from klem_nb.hmm import forward_backward
    logB = est._log_frameprob(est._theta(), X); logB[10] = 0
    lp, *_ = forward_backward(np.log(start['startprob_']), start['transmat_'], logB[:lengths[0]][None])
    lp2, *_ = forward_backward(np.log(start['startprob_']), start['transmat_'], logB[lengths[0]:][None])
    np.testing.assert_allclose(est.score(Xm, lengths), lp[0] + lp2[0], rtol=1e-12)
    assert est.score(Xm, lengths) > est.score(X, lengths)
    fit = _set(PoissonHMM(n_components=2, init_params='', n_iter=5, tol=0, strict=True), start).fit(Xm, lengths)
    assert np.isfinite(fit.lambdas_).all() and fit.predict(Xm, lengths).shape == (len(X),)

def test_ledger_and_strict_mode(path):
    X, lengths, start = _pois_data()
    est = _set(PoissonHMM(n_components=2, init_params='', n_iter=30, tol=0, strict=True), start).fit(X, lengths)
    F = est.trace_.free_energy
    assert (np.diff(F) <= 1e-10 * np.abs(F[1:])).all()
    gap = est.trace_.kl_gap[est.trace_.step == 'E']
    np.testing.assert_allclose(gap, 0, atol=1e-10)
    # break the M-step: strict mode names it
    class Broken(PoissonHMM):
        def _emission_m_step(self, th, stats):
            super()._emission_m_step(th, stats); th['lambdas'] = th['lambdas'] * 1.5
    with pytest.raises(FreeEnergyIncreaseError, match='M-step'):
        _set(Broken(n_components=2, init_params='', n_iter=5, tol=0, strict=True), start).fit(X, lengths)

def test_threads_give_identical_answers(monkeypatch, path):
    import klem_nb.hmm as H
    monkeypatch.setattr(H, '_ROWS_PER_CHUNK', 100); monkeypatch.setattr(H, '_ROWS_PER_COMPILED_CHUNK', 100)
    X, lengths, rng = _gauss_data(3, lengths=(60, 70, 80, 90, 100, 110))
    start = _gauss_start('diag', 3, 2, rng, X)
    fits = [_set(GaussianHMM(n_components=3, init_params='', n_iter=5, tol=0, n_jobs=j), start).fit(X, lengths) for j in (1, 2, 3)]
    for f in fits[1:]:
        np.testing.assert_array_equal(f.means_, fits[0].means_)
        np.testing.assert_array_equal(f.lower_bounds_, fits[0].lower_bounds_)

def test_long_sequences_chunked_recursion():
    "Sequences longer than CHUNKED_MIN_T take the two-level recursion: still hmmlearn's answer, and the plain one's."
    import klem_nb.hmm as H
    rng = np.random.default_rng(5)
    k, lengths = 3, np.array([1500, 700])
    X = rng.poisson(np.array([2., 8., 20.])[_chain(rng, k, lengths.sum())])[:, None].astype(float)
    sp, A = _start(k, rng)
    start = dict(startprob_=sp, transmat_=A, lambdas_=np.array([[3.], [7.], [15.]]))
    kw = dict(n_components=k, init_params='', n_iter=6, tol=0)
    ours = _set(PoissonHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.PoissonHMM(**kw), start).fit(X, lengths)
    _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'lambdas_'])
    B = np.exp(rng.normal(size=(2, 1000, k)))
    for a, b in zip(H._passes_plain(sp, A, B), H._passes_chunked(sp, A, B)): np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)

def test_map_ledger_with_priors(monkeypatch):
    "With hmmlearn's priors the M-step maximises E log p + log p(θ): the ledger tracks that objective, strictly."
    import klem_nb.hmm as H
    X, lengths, rng = _gauss_data(1)
    start = _gauss_start('full', 3, 2, rng, X)
    kw = dict(n_components=3, covariance_type='full', init_params='', n_iter=40, tol=0, means_prior=0.5, means_weight=2.0,
              covars_prior=0.3, covars_weight=4, strict=True)
    est = _set(GaussianHMM(**kw), start).fit(X, lengths)
    led = est.trace_
    np.testing.assert_allclose(led.kl_gap[led.step == 'E'], 0, atol=1e-10)
    L = led.log_likelihood[led.step == 'E'] * len(lengths)
    assert np.all(L != est.lower_bounds_)                       # the ledger's L includes log p(θ); lower_bounds_ does not
    monkeypatch.setattr(H.HMMModel, 'log_prior', lambda self: 0.0)   # mutation: leave the prior out of the ledger
    with pytest.raises(FreeEnergyIncreaseError, match='M-step'): _set(GaussianHMM(**kw), start).fit(X, lengths)

@pytest.mark.parametrize('cls', [GaussianHMM, CategoricalHMM, PoissonHMM])
def test_docstring_lists_every_parameter(cls):
    import inspect, re
    doc = inspect.getdoc(cls)
    body = doc.split('Parameters\n----------\n')[1].split('Attributes\n----------\n')[0]
    listed = set(re.findall(r'^(\w+) :', body, flags=re.M))
    assert set(inspect.signature(cls).parameters) <= listed

@pytest.mark.parametrize('which', ['gaussian', 'categorical'])
def test_sample_matches_hmmlearn_other_families(which):
    if which == 'gaussian':
        X, lengths, rng = _gauss_data()
        start, ours, theirs = _gauss_start('full', 3, 2, rng, X), GaussianHMM(3, covariance_type='full'), hmm.GaussianHMM(3, covariance_type='full')
    else:
        X, lengths, start = _cat_data()
        ours, theirs = CategoricalHMM(2), hmm.CategoricalHMM(2)
    a, za = _set(ours, start).sample(40, random_state=7)
    b, zb = _set(theirs, start).sample(40, random_state=7)
    np.testing.assert_array_equal(za, zb); np.testing.assert_allclose(a, b, rtol=1e-12)

def test_gaussian_nan_rows():
    "A NaN row of a GaussianHMM sequence: emission factor 1 in score, posteriors and Viterbi; fit runs through it."
    X, lengths, rng = _gauss_data()
    start = _gauss_start('diag', 3, 2, rng, X)
    est = _set(GaussianHMM(3, init_params=''), start)
    Xm = X.copy(); Xm[[5, 6, 200]] = np.nan
    from klem_nb.hmm import forward_backward, viterbi
    logB = est._log_frameprob(est._theta(), X); logB[[5, 6, 200]] = 0
    starts = np.r_[0, np.cumsum(lengths)]
    ll = sum(forward_backward(np.log(start['startprob_']), start['transmat_'], logB[a:b][None])[0][0] for a, b in zip(starts, starts[1:]))
    np.testing.assert_allclose(est.score(Xm, lengths), ll, rtol=1e-12)
    path = np.concatenate([viterbi(np.log(start['startprob_']), np.log(start['transmat_']), logB[a:b][None])[1][0] for a, b in zip(starts, starts[1:])])
    np.testing.assert_array_equal(est.predict(Xm, lengths), path)
    fit = _set(GaussianHMM(3, init_params='', n_iter=20, tol=0, strict=True), start).fit(Xm, lengths)
    assert np.isfinite(fit.means_).all() and np.isfinite(fit.score(Xm, lengths))

def test_zero_weight_drops_a_sequence():
    X, lengths, start = _pois_data(lengths=(50, 60, 50))
    kw = dict(n_components=2, init_params='', n_iter=8, tol=0)
    a = _set(PoissonHMM(**kw), start).fit(X, lengths, sample_weight=[1, 0, 1])
    b = _set(PoissonHMM(**kw), start).fit(np.r_[X[:50], X[110:]], [50, 50])
    np.testing.assert_allclose(a.lambdas_, b.lambdas_, rtol=1e-12); np.testing.assert_allclose(a.transmat_, b.transmat_, rtol=1e-12)

def test_padded_batches_of_unequal_lengths(monkeypatch):
    "Sequences of different lengths share a padded batch: the same answer as one sequence at a time (and as hmmlearn)."
    import klem_nb.hmm as H
    rng = np.random.default_rng(9)
    lengths = np.array([100, 97, 1, 2, 90, 99, 3, 600, 560])
    X = rng.poisson(np.array([2., 9.])[_chain(rng, 2, lengths.sum())])[:, None].astype(float)
    sp, A = _start(2, rng)
    start = dict(startprob_=sp, transmat_=A, lambdas_=np.array([[3.], [7.]]))
    kw = dict(n_components=2, init_params='', n_iter=5, tol=0, strict=True)
    fits = []
    for ratio in (1.0, 1.25, 1e9):                  # exact lengths only; the default buckets; everything in one batch
        monkeypatch.setattr(H, 'PAD_RATIO', ratio)
        fits.append(_set(PoissonHMM(**kw), start).fit(X, lengths))
        np.testing.assert_allclose(fits[-1].trace_.kl_gap[fits[-1].trace_.step == 'E'], 0, atol=1e-10)
    for f in fits[1:]:
        for n in ('startprob_', 'transmat_', 'lambdas_', 'lower_bounds_'): np.testing.assert_allclose(getattr(f, n), getattr(fits[0], n), rtol=1e-11)
        np.testing.assert_allclose(f.trace_.free_energy, fits[0].trace_.free_energy, rtol=1e-11)
        np.testing.assert_allclose(f.predict_proba(X, lengths), fits[0].predict_proba(X, lengths), rtol=1e-9, atol=1e-14)
    theirs = _set(hmm.PoissonHMM(**{k: v for k, v in kw.items() if k != 'strict'}), start).fit(X, lengths)
    _compare(fits[2], theirs, X, lengths, ['startprob_', 'transmat_', 'lambdas_'])

@pytest.mark.parametrize('params', ['st', 'mc', 'sm', 'stm'])
def test_gaussian_parity_params_subsets(params):
    "Only the letters in `params` are updated, as in hmmlearn."
    X, lengths, rng = _gauss_data(4)
    start = _gauss_start('diag', 3, 2, rng, X)
    kw = dict(n_components=3, covariance_type='diag', init_params='', params=params, n_iter=6, tol=0)
    ours = _set(GaussianHMM(**kw), start).fit(X, lengths)
    theirs = _set(hmm.GaussianHMM(**kw), start).fit(X, lengths)
    _compare(ours, theirs, X, lengths, ['startprob_', 'transmat_', 'means_', 'covars_'])
    if 'm' not in params: np.testing.assert_array_equal(ours.means_, start['means_'])

def test_covariances_without_means():
    "params='tc': hmmlearn 0.3.3 skips the counts when 'm' is absent and divides by 1e-5 (covariances ~1e7); ours is the M-step."
    X, lengths, rng = _gauss_data(4)
    start = _gauss_start('diag', 3, 2, rng, X)
    gamma = _set(GaussianHMM(3), start).predict_proba(X, lengths)
    ours = _set(GaussianHMM(3, init_params='', params='tc', n_iter=1), start).fit(X, lengths)
    expected = (1e-2 + np.einsum('nk,nkd->kd', gamma, (X[:, None] - start['means_']) ** 2)) / gamma.sum(0)[:, None]
    np.testing.assert_allclose(ours._covars_, expected, rtol=1e-10)
    theirs = _set(hmm.GaussianHMM(3, init_params='', params='tc', n_iter=1), start).fit(X, lengths)
    assert theirs._covars_.min() > 1e5                      # the hmmlearn bug this test documents

@pytest.mark.parametrize('kw, message', [(dict(n_components=0), 'n_components'), (dict(implementation='fast'), 'implementation'),
                                         (dict(covariance_type='round'), 'covariance_type')])
def test_bad_constructor_values(kw, message):
    X, lengths, rng = _gauss_data()
    with pytest.raises(ValueError, match=message): GaussianHMM(**{'n_components': 3, **kw}).fit(X, lengths)

def _mixed_fits(family):
    "A fit with weights (one zero), one- and two-step sequences and NaN rows, its ledger, score_samples and decode."
    rng = np.random.default_rng(11)
    lengths = [1, 2, 150, 233, 97]
    n = sum(lengths)
    if family == 'gaussian':
        X = rng.normal(size=(n, 3)) + np.repeat(rng.normal(scale=3, size=(3, 3)), [n // 3, n // 3, n - 2 * (n // 3)], 0)
        X[[4, 100, 101]] = np.nan
        est = GaussianHMM(3, covariance_type='diag', n_iter=6, tol=0, random_state=0)
    elif family == 'categorical':
        X = rng.integers(0, 5, size=(n, 1))
        est = CategoricalHMM(3, n_iter=6, tol=0, random_state=0)
    else:
        X = rng.poisson(rng.choice([2., 9.], size=(n, 2))).astype(float)
        X[[3, 60]] = np.nan
        est = PoissonHMM(2, n_iter=6, tol=0, random_state=0)
    w = np.array([1.0, 0.0, 2.0, 0.5, 3.0])
    est.set_params(n_jobs=2).fit(X, lengths, sample_weight=w)
    return est, est.score_samples(X, lengths), est.decode(X, lengths, algorithm='map')

@pytest.mark.skipif(numba is None, reason='numba is not installed')
@pytest.mark.parametrize('family', ['gaussian', 'categorical', 'poisson'])
def test_compiled_equals_numpy(family, monkeypatch):
    "The compiled E-step gives the numpy E-step's fit, ledger (L, F and the KL gap), posteriors and decoding, to 1e-12."
    import klem_nb.hmm as H
    monkeypatch.setattr(H, '_ROWS_PER_COMPILED_CHUNK', 200)         # several chunks: the threads have work
    monkeypatch.setattr(H, '_UNROLL_MIN_ROWS', 150)                 # the larger chunks take the loops unrolled for k
    fits = {}
    for flag in (True, False):
        monkeypatch.setattr(H, 'USE_NUMBA', flag)
        fits[flag] = _mixed_fits(family)
    (a, (la, pa), (_, da)), (b, (lb, pb), (_, db)) = fits[True], fits[False]
    for name in a._param_names: np.testing.assert_allclose(getattr(a, name + '_'), getattr(b, name + '_'), rtol=1e-12, atol=1e-15, err_msg=name)
    for col in ('log_likelihood', 'free_energy'): np.testing.assert_allclose(getattr(a.trace_, col), getattr(b.trace_, col), rtol=1e-12)
    np.testing.assert_allclose(a.trace_.kl_gap, b.trace_.kl_gap, rtol=1e-12, atol=1e-12 * np.abs(b.trace_.free_energy).max())   # E-rows: 0 to rounding
    np.testing.assert_allclose(la, lb, rtol=1e-12); np.testing.assert_allclose(pa, pb, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(da, db)

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_compiled_entropy_is_measured(monkeypatch):
    "Mutation: leave one entropy term out of the compiled E-step and the equality with the numpy ledger fails."
    import klem_nb.hmm as H
    monkeypatch.setattr(H, 'USE_NUMBA', True)
    est, *_ = _mixed_fits('poisson')
    orig = H._fb_compiled
    def broken(*a, **k):
        out = list(orig(*a, **k))
        if out[4] is not None: out[4] += 1e-3                       # a slightly wrong Σ q log q (not in the forward-only pass)
        return tuple(out)
    monkeypatch.setattr(H, '_fb_compiled', broken)
    bad, *_ = _mixed_fits('poisson')
    assert not np.allclose(bad.trace_.free_energy, est.trace_.free_energy, rtol=1e-12)
    np.testing.assert_allclose(bad.lambdas_, est.lambdas_, rtol=1e-12)   # the fit itself does not use the entropy

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_compiled_bad_parameters(monkeypatch):
    "Impossible observations and sequences raise the numpy path's ValueError on the compiled path too."
    import klem_nb.hmm as H
    X, lengths, start = _cat_data()
    for flag in (True, False):
        monkeypatch.setattr(H, 'USE_NUMBA', flag)
        est = _set(CategoricalHMM(2, init_params='', n_iter=2), dict(start, emissionprob_=np.array([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]])))
        with pytest.raises(ValueError, match='probability 0 under every state'): est.fit(X, lengths)
        est = _set(CategoricalHMM(2, init_params='', n_iter=2), dict(start, startprob_=np.array([1.0, 0.0]), transmat_=np.eye(2),
                                                                   emissionprob_=np.array([[1.0, 0, 0, 0], [0.25] * 4])))
        with pytest.raises(ValueError, match='sequence has probability 0'): est.fit(X, lengths)

def _python(code, **env):
    import os, subprocess, sys
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()

def test_numba_is_imported_lazily_and_optional():
    "`import klem_nb.hmm` does not import numba; KLEM_NB_NUMBA=0 or a missing numba gives the numpy path, with the same fit."
    assert _python("import sys, klem_nb.hmm; print('numba' in sys.modules)") == ['False']
    fit = ("import sys, numpy as np, klem_nb.hmm as H; X = np.random.default_rng(0).poisson(4, size=(300, 1)).astype(float); "
           "e = H.PoissonHMM(2, n_iter=5, random_state=0).fit(X, [100, 200]); "
           "print(H._compiled() is not None, sys.modules.get('numba') is not None, repr(float(e.lower_bounds_[-1])))")
    off = _python(fit, KLEM_NB_NUMBA='0')
    assert off[:2] == ['False', 'False']
    gone = _python("import sys; sys.modules['numba'] = None; " + fit)   # numba not installed
    assert gone[:2] == ['False', 'False'] and gone[2] == off[2]
    if numba is not None:
        on = _python(fit, KLEM_NB_NUMBA='1')
        assert on[:2] == ['True', 'True']
        np.testing.assert_allclose(float(on[2]), float(off[2]), rtol=1e-12)

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_compiled_without_a_disk_cache():
    "When numba cannot cache on disk (a read-only install raises at decoration), the loops are compiled per process."
    code = ("import numba, numpy as np; real = numba.njit\n"
            "def njit(*a, **k):\n"
            "    if k.get('cache'): raise RuntimeError('cannot cache function: no locator available')\n"
            "    return real(*a, **k)\n"
            "numba.njit = njit\n"
            "import klem_nb.hmm as H\n"
            "e = H.PoissonHMM(2, n_iter=3, random_state=0).fit(np.random.default_rng(0).poisson(4, size=(200, 1)).astype(float))\n"
            "print(H._compiled() is not None, np.isfinite(e.lambdas_).all())")
    assert _python(code, KLEM_NB_NUMBA='1') == ['True', 'True']

@pytest.mark.skipif(numba is None, reason='numba is not installed')
@pytest.mark.parametrize('k, unroll', [(3, True), (3, False), (11, True)])   # loops unrolled for k <= 8, generic otherwise
def test_compiled_entropy_equals_direct_formula(k, unroll, monkeypatch):
    "The compiled E-step's Σ q log q (one log per row and state) equals Σ_t Σ_ij ξ log(ξ/γ_t) + Σ γ_1 log γ_1 with explicit ξ_t."
    import klem_nb.hmm as H
    monkeypatch.setattr(H, 'USE_NUMBA', True)
    monkeypatch.setattr(H, '_UNROLL_MIN_ROWS', 0 if unroll else 10 ** 9)
    rng = np.random.default_rng(k)
    lengths, w = np.array([1, 2, 9, 40]), np.array([0.5, 1.0, 2.0, 1.5])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    log_B = rng.normal(scale=3, size=(lengths.sum(), k))
    pi, A = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k), size=k)
    ll, wg, start, xi, neg_h, ell_b = H._fb_compiled(H._compiled(), log_B, starts, w, pi, A)
    direct, xi_sum = 0.0, np.zeros((k, k))
    for s in range(len(lengths)):
        lb = log_B[starts[s]:starts[s + 1]]
        B = np.exp(lb - lb.max(1, keepdims=True))
        fwd, bwd, c = (v[0] for v in H._passes_plain(pi, A, B[None]))
        g = fwd * bwd / (fwd * bwd).sum(1, keepdims=True)
        h = (g[0] * np.log(g[0])).sum()
        for t in range(len(lb) - 1):
            x = fwd[t][:, None] * A * (B[t + 1] * bwd[t + 1])[None] / c[t + 1]
            h += (x * np.log(x / g[t][:, None])).sum()
            xi_sum += w[s] * x
        direct += w[s] * h
    np.testing.assert_allclose(neg_h, direct, rtol=1e-10)
    np.testing.assert_allclose(xi, xi_sum, rtol=1e-10)
    monkeypatch.setattr(H, '_UNROLL_MIN_ROWS', 10 ** 9 if unroll else 0)   # the other loops (k <= 8): the same sums
    other = H._fb_compiled(H._compiled(), log_B, starts, w, pi, A)
    for a, b in zip((ll, wg, start, xi, neg_h, ell_b), other): np.testing.assert_array_equal(a, b)

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_compiled_gamma_mutation_opens_the_gap(monkeypatch):
    "Mutation: perturb the compiled loops' w·γ after they return and the ledger's E-row KL gap is no longer 0."
    import klem_nb.hmm as H
    monkeypatch.setattr(H, 'USE_NUMBA', True)
    X, lengths, start = _pois_data()
    def gaps():
        est = _set(PoissonHMM(n_components=2, init_params='', n_iter=4, tol=0), start).fit(X, lengths)
        tr = est.trace_
        return np.abs(tr.kl_gap[tr.step == 'E']).max() / np.abs(tr.free_energy).max()
    assert gaps() < 1e-12
    for key in ('fb', 'fb_arrays'):                                 # the loops with state in registers, and in arrays
        def bent(*args, real=H._compiled()[key]):
            real(*args)
            if args[-1]: args[10][::7] *= 1.001                      # w·γ of every 7th row, 0.1% off
        monkeypatch.setitem(H._COMPILED, key, bent)
    assert gaps() > 1e-6

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_compiled_log_scales_products_and_tiny_steps():
    "The forward loop's Σ log c_t (logs of running products of c_t, tiny c_t one by one) equals numpy's per-step logs."
    import klem_nb.hmm as H
    rng = np.random.default_rng(5)
    k, T = 2, 3000
    A = np.array([[1 - 1e-120, 1e-120], [1e-120, 1 - 1e-120]])        # a switch of state costs about 1e-120, so
    log_B = rng.normal(scale=100, size=(T, k))                           # c_t is about b_t(z) / max_j b_t(j): often tiny
    pi = np.array([0.5, 0.5])
    lb = log_B - log_B.max(1, keepdims=True)
    c = H._passes_plain(pi, A, np.exp(lb)[None])[2][0]
    assert (c < 1e-100).sum() >= 5 and np.log(c[c >= 1e-100]).sum() < -460 * 5   # both branches, several products flushed
    for lengths in ([T], [1, 999, 2000]):
        starts = np.concatenate([[0], np.cumsum(lengths)])
        ll, wg = H._fb_compiled(H._compiled(), log_B, starts, np.ones(len(lengths)), pi, A)[:2]
        for s, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
            lp, g, *_ = H.forward_backward(np.log(pi), A, log_B[None, a:b])
            np.testing.assert_allclose(ll[s], lp[0], rtol=1e-12)
            np.testing.assert_allclose(wg[a:b], g[0], rtol=1e-9, atol=1e-12)

@pytest.mark.skipif(numba is None, reason='numba is not installed')
def test_in_place_rewrite_and_its_fallback(monkeypatch):
    "The array loops are the tuple loops' source rewritten (no `_put` left); without the source, the loops themselves."
    import inspect
    import klem_nb.hmm as H
    g = H._in_place(H._fb_loops)
    assert g is not H._fb_loops and '_put' not in g.__code__.co_names and '_vec' not in g.__code__.co_names
    def no_source(f): raise OSError('could not get source code')
    monkeypatch.setattr(inspect, 'getsource', no_source)
    assert H._in_place(H._fb_loops) is H._fb_loops

"""The fast kernels (klem_nb.gaussian, nbs/07_gaussian.ipynb) against the plain functions of klem_nb.gaussian.

Every covariance type, several block and chunk sizes, one and two threads, sample weights, and data far from the
origin. Nothing here is timed."""
import numpy as np
from scipy.special import logsumexp
import pytest

import klem_nb.gaussian as kernels
from klem_nb.em import em
from klem_nb.e_step import posterior
from klem_nb.e_step import log_responsibilities
from klem_nb.gaussian import (compute_precision_cholesky, estimate_gaussian_parameters, estimate_log_gaussian_prob,
                              gaussian_parameters_from_stats, gaussian_stats)
from klem_nb.gaussian import GaussianKernels, Scratch, precision_cholesky, run_chunks, run_parts

TYPES = ('full', 'tied', 'diag', 'spherical')


def problem(covariance_type, n=700, d=3, k=4, offset=0.0, seed=0):
    "Data, responsibilities and parameters (from an M-step on random responsibilities) of one covariance type."
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    z = rng.integers(k, size=n)
    X = centres[z] + rng.normal(size=(n, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d))) + offset
    resp = rng.dirichlet(np.ones(k), size=n)
    nk, means, cov = estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    return X, resp, nk / nk.sum(), means, compute_precision_cholesky(cov, covariance_type)


def merged(kern, X, wresp, block):
    "Kernel statistics summed over blocks of `block` rows."
    parts = [kern.stats(X[a:a + block], wresp[a:a + block]) for a in range(0, len(X), block)]
    return {key: sum(p[key] for p in parts) for key in parts[0]}


@pytest.mark.parametrize('covariance_type', TYPES)
@pytest.mark.parametrize('d,k', [(1, 2), (3, 4), (7, 3)])
def test_log_joint_matches_plain(covariance_type, d, k):
    X, _, weights, means, U = problem(covariance_type, d=d, k=k, seed=d + k)
    plain = estimate_log_gaussian_prob(X, means, U, covariance_type) + np.log(weights)
    kern = GaussianKernels(covariance_type, weights, means, U)
    np.testing.assert_allclose(kern.log_joint(X), plain, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize('covariance_type', TYPES)
@pytest.mark.parametrize('block', [1, 37, 256, 10_000])
@pytest.mark.parametrize('weighted', [False, True])
def test_parameters_match_plain(covariance_type, block, weighted):
    X, resp, weights, means, U = problem(covariance_type, seed=5)
    w = np.random.default_rng(1).uniform(0, 3, size=len(X)) if weighted else np.ones(len(X))
    wresp = resp * w[:, None]
    kern = GaussianKernels(covariance_type, weights, means, U)
    nk, m, cov = kern.parameters(merged(kern, X, wresp, block), 1e-6)
    nk0, m0, cov0 = estimate_gaussian_parameters(X, wresp, 1e-6, covariance_type)
    np.testing.assert_allclose(nk, nk0, rtol=1e-12)
    np.testing.assert_allclose(m, m0, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(cov, cov0, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('covariance_type', TYPES)
def test_small_chunks_and_threads(covariance_type, monkeypatch):
    "Chunks of a few rows, spread over two threads, give the same numbers as one pass."
    X, resp, weights, means, U = problem(covariance_type, n=5000, d=4, k=3, seed=2)
    ref = GaussianKernels(covariance_type, weights, means, U)
    lj_ref, st_ref = ref.log_joint(X), ref.stats(X, resp)
    monkeypatch.setattr(kernels, 'MIN_CHUNK_ROWS', 64)
    for n_threads in (1, 2):
        kern = GaussianKernels(covariance_type, weights, means, U, scratch=Scratch(), n_threads=n_threads)
        kern.rows = 97
        np.testing.assert_allclose(kern.log_joint(X), lj_ref, rtol=1e-13, atol=1e-12)
        st = kern.stats(X, resp)
        for key in st_ref: np.testing.assert_allclose(st[key], st_ref[key], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize('covariance_type', TYPES)
def test_large_offset(covariance_type):
    "Data 1e6 away from the origin: the centred kernels keep the digits that the uncentred expansions lose."
    X0, resp, weights, means0, U = problem(covariance_type, seed=3)
    offset = 1e6
    kern = GaussianKernels(covariance_type, weights, means0 + offset, U)
    # translating data and means together changes no density and no covariance
    plain = estimate_log_gaussian_prob(X0, means0, U, covariance_type) + np.log(weights)
    np.testing.assert_allclose(kern.log_joint(X0 + offset), plain, rtol=1e-9, atol=1e-8)
    nk, m, cov = kern.parameters(kern.stats(X0 + offset, resp), 1e-6)
    nk0, m0, cov0 = estimate_gaussian_parameters(X0, resp, 1e-6, covariance_type)
    np.testing.assert_allclose(m - offset, m0, atol=1e-8)
    np.testing.assert_allclose(cov, cov0, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize('d', [31, 32, 50, 64])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_full_block_triangles_match_plain(d, dtype):
    "Full's products by feature blocks (17.5): uneven blocks, one block below d = 32, the fused E-step; float32 to its accuracy."
    X, resp, weights, means, U = problem('full', n=3000, d=d, k=3, seed=d)
    F = means + np.random.default_rng(1).normal(0, 0.3, means.shape)
    kern = GaussianKernels('full', weights, means, U, frames=F, dtype=dtype)
    test = X.astype(dtype)
    assert len(kern.blocks) == (1 if d < 32 else min(4, d // 16))
    tol = 1e-11 if dtype == np.float64 else 2e-4
    plain = estimate_log_gaussian_prob(test.astype(np.float64), means, U, 'full') + np.log(weights)
    np.testing.assert_allclose(kern.log_joint(test), plain, rtol=tol)
    st, ref = kern.stats(test, resp), gaussian_stats(test.astype(np.float64), resp, 'full', shift=F)
    np.testing.assert_allclose(st['sum_xx'], ref['sum_xx'], rtol=tol, atol=tol * np.abs(ref['sum_xx']).max())
    assert np.array_equal(st['sum_xx'], st['sum_xx'].transpose(0, 2, 1))
    es = kern.e_step(test)                              # the table's [1; x̃] handed to the statistics
    np.testing.assert_allclose(es.stats['sum_xx'], kern.stats(test, posterior(plain)[0])['sum_xx'], rtol=tol,
                               atol=tol * np.abs(ref['sum_xx']).max())


@pytest.mark.parametrize('covariance_type', TYPES)
def test_stats_are_the_plain_ones_in_each_components_frame(covariance_type):
    X, resp, weights, means, U = problem(covariance_type, seed=4)
    F = means + np.random.default_rng(0).normal(0, 0.3, means.shape)      # frames fixed for a fit, not the means
    kern = GaussianKernels(covariance_type, weights, means, U, frames=F)
    st = kern.stats(X, resp)
    plain = gaussian_stats(X, resp, covariance_type, shift=F)
    np.testing.assert_allclose(st['nk'], plain['nk'], rtol=1e-12)
    np.testing.assert_allclose(st['sum_x'], plain['sum_x'] - plain['nk'][:, None] * F, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(st['sum_xx'], plain['sum_xx'], rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(
        kern.parameters(st, 1e-3)[2],
        gaussian_parameters_from_stats(gaussian_stats(X, resp, covariance_type, shift=means), 1e-3, covariance_type,
                                       shift=means)[2], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('covariance_type', TYPES)
def test_fast_and_direct_paths_agree(covariance_type, monkeypatch):
    "Forcing every component onto the direct path changes nothing but rounding: both branches are exercised."
    X, resp, weights, means, U = problem(covariance_type, seed=5)
    F = means + 0.1
    fast = GaussianKernels(covariance_type, weights, means, U, frames=F)
    lj, st = fast.log_joint(X), fast.stats(X, resp)
    monkeypatch.setattr(kernels, '_SAFE', -1.0)                        # every bound now exceeds it
    slow = GaussianKernels(covariance_type, weights, means, U, frames=F)
    np.testing.assert_allclose(slow.log_joint(X), lj, rtol=1e-11)
    for key in st: np.testing.assert_allclose(slow.stats(X, resp)[key], st[key], rtol=1e-10, atol=1e-9)


def direct_score(gm, X):
    "log p(x) of a fitted GaussianMixture by the unexpanded formula, component by component."
    cols = []
    for j in range(gm.n_components):
        U = {'full': lambda: gm.precisions_cholesky_[j], 'tied': lambda: gm.precisions_cholesky_,
             'diag': lambda: np.diag(gm.precisions_cholesky_[j]),
             'spherical': lambda: np.eye(X.shape[1]) * gm.precisions_cholesky_[j]}[gm.covariance_type]()
        y = (X - gm.means_[j]) @ U
        cols.append(np.log(gm.weights_[j]) + np.log(np.abs(np.diag(U))).sum() - 0.5 * X.shape[1] * np.log(2 * np.pi)
                    - 0.5 * (y * y).sum(1))
    return logsumexp(np.array(cols).T, axis=1)


@pytest.mark.parametrize('distance', [1e2, 1e4, 1e5])
@pytest.mark.parametrize('covariance_type', TYPES)
def test_narrow_far_component_is_exact(covariance_type, distance):
    "A component of width 1e-3 at distance up to 1e5 from the rest: fit converges, score_samples is the direct formula."
    from klem_nb.gmm import GaussianMixture
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(500, 2)), distance + 1e-3 * rng.normal(size=(50, 2))])
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0, reg_covar=1e-12, tol=1e-10).fit(X)
    assert gm.converged_
    ref = direct_score(gm, X)
    np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-9)


@pytest.mark.parametrize('covariance_type', TYPES)
def test_precision_cholesky_matches_scipy_route(covariance_type):
    *_, U = problem(covariance_type, d=5, k=3, seed=6)
    cov = {'full': np.linalg.inv(U @ U.transpose(0, 2, 1)) if U.ndim == 3 else None}.get(covariance_type)
    if covariance_type == 'tied': cov = np.linalg.inv(U @ U.T)
    if covariance_type in ('diag', 'spherical'): cov = 1 / U**2
    np.testing.assert_allclose(precision_cholesky(cov, covariance_type), compute_precision_cholesky(cov, covariance_type),
                               rtol=1e-10, atol=1e-12)


def test_precision_cholesky_errors():
    good = np.tile(np.eye(2), (3, 1, 1))
    bad = good.copy(); bad[1] = [[1, 2], [2, 1]]
    with pytest.raises(ValueError, match='component 1.*reg_covar'): precision_cholesky(bad, 'full')
    nan = good.copy(); nan[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match='component 2'): precision_cholesky(nan, 'full')
    with pytest.raises(ValueError, match='tied covariance'): precision_cholesky(-np.eye(2), 'tied')
    with pytest.raises(ValueError, match='component 0'): precision_cholesky(np.array([[0.0, 1.0]]), 'diag')


def test_posterior_matches_log_responsibilities():
    rng = np.random.default_rng(7)
    lj = rng.normal(-50, 300, size=(500, 6))
    lj[:5, 2] = -np.inf
    lj[5] = [-1e5, -1e5 - 710, -1e5 - 2000, -1e5 + 1, -np.inf, -1e5]
    log_resp, log_norm = log_responsibilities(lj)
    for order in 'CF':
        a = np.asarray(lj, order=order)
        q, ln, _ = posterior(a)
        np.testing.assert_allclose(ln, log_norm, rtol=1e-14)
        np.testing.assert_allclose(q, np.exp(log_resp), rtol=1e-10, atol=1e-300)   # exp(lj - log_norm) at -1e5 loses ~1e-11
        assert np.all(q[:5, 2] <= np.exp(-700))


def test_run_chunks_order_and_errors():
    out = run_chunks(lambda a, b, w: (a, w), 10_000, 1000, n_threads=2)
    assert out == [(a, a // 1000 % 2) for a in range(0, 10_000, 1000)]   # in row order; the caller is worker 0
    assert run_parts(lambda p, w: (p, w), list('abcdefg'), 3) == [(p, i % 3) for i, p in enumerate('abcdefg')]
    assert run_parts(lambda p, w: (p, w), list('ab'), 1) == [('a', 0), ('b', 0)]
    def boom(a, b, w): raise RuntimeError('chunk failed')
    with pytest.raises(RuntimeError, match='chunk failed'): run_chunks(boom, 10_000, 1000, n_threads=2)


@pytest.mark.filterwarnings('ignore::sklearn.exceptions.ConvergenceWarning')
@pytest.mark.parametrize('covariance_type', TYPES)
def test_gaussian_mixture_ledger_identities(covariance_type):
    "The engine's cheap ledger on a Gaussian mixture: F = -L after E, the gap closes the identity after M."
    from klem_nb.gmm import GaussianMixture
    X, *_ = problem(covariance_type, n=3000, d=2, k=3, seed=8)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-8, max_iter=50).fit(X)
    led = gm.trace_
    e = led.step == 'E'
    np.testing.assert_allclose(led.free_energy[e], -led.log_likelihood[e], rtol=1e-13)   # measured, separately
    assert np.all(led.kl_gap >= -1e-12)
    assert np.all(np.diff(led.free_energy) <= 1e-10 * np.abs(led.free_energy[:-1]))


def test_in_memory_fits_hand_all_rows_to_the_one_pass_e_step(tmp_path):
    "One block for the kernels' one-pass E-step (fewer hand-offs to threads); bounded blocks wherever a block's tables would grow."
    from klem_nb import gmm
    from klem_nb.gmm import GaussianMixture
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(30_000, 4)), rng.normal(size=(30_000, 4)) + 4]
    sizes = []
    class Spy(GaussianMixture):
        def _em_block_size(self, X):
            sizes.append(super()._em_block_size(X))
            return sizes[-1]
    def fit(X, est, **kw):
        sizes.clear()
        return est.fit(X, **kw), sizes[-1]
    big, size = fit(X, Spy(2, covariance_type='diag', random_state=0, tol=0, max_iter=5))
    assert size == len(X)
    np.save(tmp_path / 'X.npy', X)
    assert fit(np.load(tmp_path / 'X.npy', mmap_mode='r'), Spy(2, random_state=0, max_iter=2))[1] is None      # a memmap: read by blocks
    assert fit(X, Spy(2, random_state=0, max_iter=2), sample_weight=np.r_[0.0, np.ones(len(X) - 1)])[1] == len(X) - 1   # fit drops the zero
    holes = X.copy(); holes[5, 1] = np.nan
    assert fit(holes, Spy(2, random_state=0, max_iter=2, nan_policy='marginalize'))[1] == gmm.HOLES_BLOCK_ROWS   # bounded: tables per block
    assert fit(X[:3000], Spy(2, covariance_type='full', random_state=0, max_iter=2))[1] == 3000
    wide = rng.normal(size=(3000, 64))
    assert fit(wide, Spy(16, covariance_type='full', random_state=0, max_iter=1))[1] is None                     # step by step
    class Default(GaussianMixture):
        def _em_block_size(self, X): return None
    small = Default(2, covariance_type='diag', random_state=0, tol=0, max_iter=5).fit(X)
    np.testing.assert_allclose(big.lower_bound_, small.lower_bound_, rtol=1e-13)   # the same fit, sums added in another order
    np.testing.assert_allclose(big.means_, small.means_, rtol=1e-12)

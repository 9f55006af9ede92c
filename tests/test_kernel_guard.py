"""The diag rounding guard term by term (issue 13): scikit-learn's digits, whose near-constant pixels get variances near
reg_covar, so precisions near 1e6. Component by component, (7.9) sent every component of every iteration to the direct
formula; term by term, (7.10) sends only the few (component, pixel) terms that would round. Nothing here is timed."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import klem_nb.gaussian as kernels
from klem_nb.e_step import posterior
from klem_nb.gaussian import GaussianKernels, estimate_log_gaussian_prob, gaussian_stats
from klem_nb.gmm import GaussianMixture


@pytest.fixture(scope='module')
def digits():
    return load_digits().data


@pytest.fixture(scope='module')
def fitted(digits):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')        # reg_covar against the constant pixels
        return GaussianMixture(10, covariance_type='diag', random_state=0).fit(digits)


def kernels_of(gm, X):
    return GaussianKernels('diag', gm.weights_, gm.means_, gm.precisions_cholesky_, frames=gm.means_ + 0.25,
                           box=(X.min(0), X.max(0)))


def test_digits_diag_matches_scikit_learn(digits, fitted):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        sk = SkGaussianMixture(10, covariance_type='diag', random_state=0).fit(digits)
    assert fitted.n_iter_ == sk.n_iter_
    np.testing.assert_allclose(fitted.lower_bound_, sk.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(fitted.means_, sk.means_, rtol=1e-8, atol=1e-8)


def test_digits_diag_sends_few_terms_direct(digits, fitted):
    kern = kernels_of(fitted, digits)
    p = fitted.precisions_cholesky_**2
    assert p.max() > 1e5                                         # the near-constant pixels
    lo, hi = digits.min(0), digits.max(0)
    big = np.maximum((lo - kern.centre)**2, (hi - kern.centre)**2)
    old = 4 * kernels._EPS * (p * (big + kern.mu**2)).sum(1) > kernels._SAFE   # (7.9) component by component
    assert old.all()                                             # every component went direct, every iteration
    for offsets, centres in ((kern.mu, kern.means), (kern.delta, kern.frames)):   # the E-step's and the statistics'
        unsafe, terms = kern._guard(digits, offsets, centres)
        assert not unsafe.any()                                  # no component as a whole
        assert terms is not None and 0 < len(terms.cols) < 0.3 * p.size


def test_direct_terms_keep_the_digits(digits, fitted, monkeypatch):
    "The table and statistics with the direct terms agree with the plain formulas; without them they do not."
    kern = kernels_of(fitted, digits)
    plain = estimate_log_gaussian_prob(digits, fitted.means_, fitted.precisions_cholesky_, 'diag') + np.log(fitted.weights_)
    lj = kern.log_joint(digits)
    resp = posterior(lj)[0]
    np.testing.assert_allclose(lj, plain, rtol=1e-13, atol=1e-10)
    st, ref = kern.stats(digits, resp), gaussian_stats(digits, resp, 'diag', shift=kern.frames)
    np.testing.assert_allclose(st['sum_x'], ref['sum_x'] - ref['nk'][:, None] * kern.frames, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(st['sum_xx'], ref['sum_xx'], rtol=1e-12, atol=1e-9)
    monkeypatch.setattr(kernels, '_SAFE', np.inf)              # mutation: every term on the expanded product
    bare = kernels_of(fitted, digits)
    assert bare._guard(digits, bare.mu, bare.means)[1] is None
    assert np.abs(bare.log_joint(digits) - plain).max() > 1e-9

"""Frozen parameters (`frozen=`): held bit for bit, the rest maximised given them, and F never rises (nbs/10_base.ipynb)."""
from itertools import combinations

import numpy as np
import pytest
from sklearn.base import clone

from klem_nb.base import MixtureEMModel
from klem_nb.em import em
from klem_nb.gaussian import COVARIANCE_TYPES
from klem_nb.gmm import GaussianMixture

NAMES = ('weights', 'means', 'covariances')
COMBOS = [c for r in (1, 2, 3) for c in combinations(NAMES, r)]       # the seven non-empty choices


@pytest.fixture(scope='module')
def X():
    rng = np.random.default_rng(11)
    return np.vstack([rng.normal(c, s, size=(120, 2)) for c, s in (((0, 0), 1.0), ((5, 1), 0.6), ((1, 6), 1.4))])


def start(covariance_type):
    "Deliberately off starting values, so every free parameter has to move."
    prec = {'full': np.stack([np.eye(2) * 0.5] * 3), 'tied': np.eye(2) * 0.5,
            'diag': np.full((3, 2), 0.5), 'spherical': np.full(3, 0.5)}[covariance_type]
    return dict(weights_init=[0.2, 0.3, 0.5], means_init=[[1.0, 1.0], [4.0, 0.0], [0.0, 5.0]], precisions_init=prec)


@pytest.mark.parametrize('covariance_type', COVARIANCE_TYPES)
@pytest.mark.parametrize('frozen', COMBOS, ids='+'.join)
def test_frozen_held_and_free_energy_never_rises(X, covariance_type, frozen):
    kw = dict(n_components=3, covariance_type=covariance_type, reg_covar=0.0, tol=1e-10, max_iter=60,
              frozen=frozen, **start(covariance_type))
    at_start = GaussianMixture(**{**kw, 'max_iter': 0}).fit(X)
    gm = GaussianMixture(**kw).fit(X)
    for name in frozen:                                                 # bit-identical to the start
        attr = name + '_'
        np.testing.assert_array_equal(getattr(gm, attr), getattr(at_start, attr))
    for name in set(NAMES) - set(frozen):                               # and the others did move
        assert not np.allclose(getattr(gm, name + '_'), getattr(at_start, name + '_'))
    F = gm.trace_.free_energy
    assert (np.diff(F) <= 1e-12 * np.abs(F[:-1])).all()
    res = em(MixtureEMModel(clone(at_start).set_params(max_iter=0).fit(X)), X, max_iter=20, tol=0, strict=True)
    assert res.n_iter == 20                                             # strict mode: no half-step raised F


def test_frozen_from_initialisation(X):
    "Without *_init the frozen values are the initialisation's."
    kw = dict(n_components=3, covariance_type='diag', random_state=0, frozen=('means',))
    np.testing.assert_array_equal(GaussianMixture(**kw).fit(X).means_, GaussianMixture(**kw, max_iter=0).fit(X).means_)


def test_covariances_about_frozen_means(X):
    "With frozen means the covariance is the weighted scatter about those means, not about the weighted mean."
    gm = GaussianMixture(3, covariance_type='full', reg_covar=0.0, tol=1e-12, max_iter=500, frozen=('means',),
                         **start('full')).fit(X)
    r = gm.predict_proba(X)
    for j in range(3):
        d = X - gm.means_[j]
        want = (r[:, j] * d.T) @ d / r[:, j].sum()
        np.testing.assert_allclose(gm.covariances_[j], want, rtol=1e-5)   # at the fixed point, to its tol
    free = GaussianMixture(3, covariance_type='full', reg_covar=0.0, tol=1e-12, max_iter=500, **start('full')).fit(X)
    assert gm.score(X) < free.score(X)                                   # the constraint costs likelihood


@pytest.mark.parametrize('frozen, match', [('means', "'frozen' parameter"), (('mean',), "'mean'"),
                                           (('weights', 'precisions'), "'precisions'"), (3, 'frozen')])
def test_bad_frozen(X, frozen, match):
    gm = GaussianMixture(2, frozen=frozen)
    with pytest.raises(ValueError, match=match): gm.fit(X)
    assert not hasattr(gm, 'means_')                                    # a failed fit leaves nothing behind


# ---- Bernoulli and Poisson: 'weights' and 'means' -----------------------------------------------------------------
from klem_nb.discrete import BernoulliMixture, PoissonMixture

MEAN_COMBOS = [('weights',), ('means',), ('weights', 'means')]


def mean_data(family):
    rng = np.random.default_rng(5)
    z = rng.integers(3, size=600)
    if family == 'bernoulli':
        return (rng.random((600, 6)) < rng.uniform(0.1, 0.9, size=(3, 6))[z]).astype(float)
    return rng.poisson(rng.uniform(0.5, 9.0, size=(3, 4))[z]).astype(float)


@pytest.mark.parametrize('family', ['bernoulli', 'poisson'])
@pytest.mark.parametrize('frozen', MEAN_COMBOS, ids='+'.join)
def test_mean_mixtures_frozen(family, frozen):
    X = mean_data(family)
    Est = BernoulliMixture if family == 'bernoulli' else PoissonMixture
    d = X.shape[1]
    kw = dict(n_components=3, tol=1e-10, max_iter=60, frozen=frozen, weights_init=[0.2, 0.3, 0.5],
              means_init=np.linspace(0.2, 0.8, 3 * d).reshape(3, d) * (1 if family == 'bernoulli' else 6))
    at_start = Est(**{**kw, 'max_iter': 0}).fit(X)
    est = Est(**kw).fit(X)
    for name in frozen: np.testing.assert_array_equal(getattr(est, name + '_'), getattr(at_start, name + '_'))
    for name in {'weights', 'means'} - set(frozen): assert not np.allclose(getattr(est, name + '_'), getattr(at_start, name + '_'))
    F = est.trace_.free_energy
    assert (np.diff(F) <= 1e-12 * np.abs(F[:-1])).all()
    res = em(MixtureEMModel(clone(at_start).fit(X)), X, max_iter=20, tol=0, strict=True)
    assert res.n_iter == 20


def test_mean_mixture_frozen_names(X):
    with pytest.raises(ValueError, match="'covariances'"): PoissonMixture(2, frozen=('covariances',)).fit(np.ones((5, 2)))

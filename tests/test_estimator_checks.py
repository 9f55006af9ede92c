"""klem_nb.gmm.GaussianMixture under scikit-learn's own estimator checks, and in the usual meta-estimators."""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from klem_nb.datasets import load_faithful
from klem_nb.gmm import GaussianMixture

# One component: the start is the same however it is built, so *every* check must pass, including the check that
# integer sample weights are equivalent to repeated rows.
SINGLE = [GaussianMixture(covariance_type=ct) for ct in ('full', 'tied', 'diag', 'spherical')]

# Several components, one per initialisation. The only expected failure is
# check_sample_weight_equivalence_on_dense_data, and only for these: the check fits on weighted rows and on the
# repeated rows with the same random_state, and every random start draws per row (k-means++ seeding inside KMeans,
# uniform responsibilities, a choice of rows), so the two fits start from different points. scikit-learn marks the
# same check as an expected failure for KMeans for the same reason. With a deterministic start the equivalence
# holds exactly; tests/test_gmm_inputs.py checks it with *_init given and with a k-means start on separated data.
MULTI = [GaussianMixture(n_components=2, covariance_type='diag', max_iter=20, n_init=2),
         GaussianMixture(n_components=2, covariance_type='tied', init_params='k-means++'),
         GaussianMixture(n_components=2, covariance_type='spherical', init_params='random_from_data'),
         GaussianMixture(n_components=2, init_params='random', warm_start=True)]


def expected_failed_checks(estimator):
    if estimator.n_components > 1:
        return {'check_sample_weight_equivalence_on_dense_data':
                'random starts draw per row, so weighted and repeated rows start differently (as for KMeans)'}
    return {}


@parametrize_with_checks(SINGLE + MULTI, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


X_OF = load_faithful().data


def test_clone_keeps_params_and_drops_fit():
    gm = GaussianMixture(3, covariance_type='tied', reg_covar=1e-4, random_state=7, means_init=X_OF[:3]).fit(X_OF)
    cl = clone(gm)
    params, cl_params = gm.get_params(), cl.get_params()
    np.testing.assert_array_equal(cl_params.pop('means_init'), params.pop('means_init'))
    assert cl_params == params
    assert not hasattr(cl, 'means_') and not hasattr(cl, 'trace_')
    np.testing.assert_allclose(cl.fit(X_OF).means_, gm.means_, rtol=1e-12)


# klem_nb's own constructor parameters, after scikit-learn's, each defaulting to scikit-learn's behaviour (issue 12)
EXTRA = {'nan_policy': 'raise', 'frozen': (), 'algorithm': 'batch', 'incremental_blocks': 10, 'learning_decay': 0.7,
         'learning_offset': 0.0, 'init_sample_size': 100_000}


def test_constructor_is_sklearns():
    import inspect
    import sklearn.mixture
    ours = inspect.signature(GaussianMixture.__init__)
    theirs = inspect.signature(sklearn.mixture.GaussianMixture.__init__)
    ours = [(p.name, p.kind, p.default) for p in ours.parameters.values()]
    theirs = [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
    assert ours[:len(theirs)] == theirs                      # scikit-learn's parameters, in its order, then ours
    extra = {name: default for name, _, default in ours[len(theirs):]}
    assert extra == EXTRA                                # each defaults to scikit-learn's behaviour
    params = GaussianMixture().get_params()
    assert {k: v for k, v in params.items() if k not in EXTRA} == sklearn.mixture.GaussianMixture().get_params()


def test_pipeline_with_scaler():
    pipe = Pipeline([('scale', StandardScaler()), ('gmm', GaussianMixture(2, random_state=0))]).fit(X_OF)
    Z = StandardScaler().fit_transform(X_OF)
    direct = GaussianMixture(2, random_state=0).fit(Z)
    np.testing.assert_array_equal(pipe.predict(X_OF), direct.predict(Z))
    np.testing.assert_allclose(pipe.score_samples(X_OF), direct.score_samples(Z), rtol=1e-12)
    np.testing.assert_allclose(pipe.score(X_OF), direct.score(Z), rtol=1e-12)
    assert pipe.predict_proba(X_OF).shape == (len(X_OF), 2)


def test_grid_search_picks_by_held_out_likelihood():
    grid = GridSearchCV(GaussianMixture(random_state=0),
                        {'n_components': [1, 2, 3], 'covariance_type': ['full', 'diag', 'spherical']}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        grid.fit(X_OF)
    assert grid.best_params_['n_components'] >= 2          # two clumps beat one
    assert isinstance(grid.best_estimator_, GaussianMixture)
    assert np.isfinite(grid.cv_results_['mean_test_score']).all()
    assert len(grid.cv_results_['params']) == 9

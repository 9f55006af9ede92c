"The estimators' docstrings are numpydoc: every constructor parameter and every fitted attribute is listed by name."
import inspect
import re

import numpy as np
import pytest

from klem_nb.discrete import BernoulliMixture, PoissonMixture
from klem_nb.gmm import GaussianMixture

ATTRIBUTES = ['weights_', 'means_', 'covariances_', 'precisions_', 'precisions_cholesky_', 'converged_', 'n_iter_',
              'lower_bound_', 'lower_bounds_', 'trace_', 'n_features_in_', 'feature_names_in_']
ALWAYS = ['feature_names_in_']   # set only by a fit on named columns (a DataFrame), documented all the same

rng = np.random.default_rng(0)
DATA = {GaussianMixture: rng.normal(size=(40, 2)), BernoulliMixture: rng.integers(0, 2, size=(40, 3)),
        PoissonMixture: rng.poisson(3.0, size=(40, 2))}


def section(doc:str, title:str)->str:
    "The body of the numpydoc section `title` (up to the next underlined title)."
    m = re.search(rf'^{title}\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)', doc, flags=re.M | re.S)
    assert m, f"no {title!r} section"
    return m.group(1)


def listed(body:str)->set:
    "The names that open an entry of a numpydoc section: 'name : type' at the section's indentation."
    return set(re.findall(r'^(\w+) :', body, flags=re.M))


@pytest.mark.parametrize('cls', [
    GaussianMixture,
    BernoulliMixture, PoissonMixture])
def test_docstring_lists_parameters_and_attributes(cls):
    doc = inspect.getdoc(cls)
    params = set(inspect.signature(cls).parameters)
    assert params <= listed(section(doc, 'Parameters')), sorted(params - listed(section(doc, 'Parameters')))
    fitted = cls(2, random_state=0).fit(DATA[cls])
    has = {a for a in ATTRIBUTES if hasattr(fitted, a)}
    assert {'weights_', 'means_', 'converged_', 'n_iter_', 'lower_bound_', 'lower_bounds_', 'trace_',
            'n_features_in_'} <= has
    missing = (has | set(ALWAYS)) - listed(section(doc, 'Attributes'))
    assert not missing, sorted(missing)

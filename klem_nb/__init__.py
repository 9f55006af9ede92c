__version__ = "0.0.1"

# The names users call, importable from the package itself: `from klem_nb import GaussianMixture`.
# They load lazily (PEP 562): `import klem_nb` alone imports none of the modules below, so it stays free of
# scikit-learn, scipy and matplotlib until an estimator is actually asked for.
import sys as _sys
from types import ModuleType as _ModuleType

_LAZY = {'GaussianMixture': 'klem_nb.gmm', 'BernoulliMixture': 'klem_nb.discrete',
         'PoissonMixture': 'klem_nb.discrete', 'em': 'klem_nb.em', 'Ledger': 'klem_nb.em',
         'GaussianMixtureIC': 'klem_nb.selection'}

__all__ = list(_LAZY)

def __getattr__(name):
    "Import the module that defines `name` on first use and return `name` from it."
    if name not in _LAZY: raise AttributeError(f"module 'klem_nb' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value                     # later look-ups skip this function
    return value

def __dir__(): return sorted(set(globals()) | set(_LAZY))

# `em` is both the engine function and the submodule that defines it. Importing a submodule sets an attribute of
# that name on the package, so without help `klem_nb.em` would turn from the function into the module as soon as
# anything imported `klem_nb.em` (every estimator does). The package's own module class makes `em` a property:
# reading it gives the function, and the import system's assignment of the submodule is dropped (the submodule
# stays in `sys.modules`, so `from klem_nb.em import Ledger` and `import_module('klem_nb.em')` work as usual).
# The price: `klem_nb.em.Ledger` and `import klem_nb.em as m` reach the function, not the module.
class _Package(_ModuleType):
    em = property(lambda self: __getattr__('em'), lambda self, submodule: None)

_sys.modules[__name__].__class__ = _Package

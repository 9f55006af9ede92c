"""Tests for klem_nb/__init__.py: the public names load lazily, and `import klem_nb` alone stays light."""
import subprocess
import sys

import pytest

HEAVY = ['sklearn', 'scipy', 'matplotlib', 'nbdev', 'fastcore', 'IPython']
NAMES = ['GaussianMixture', 'BernoulliMixture', 'PoissonMixture', 'em', 'Ledger', 'GaussianMixtureIC',
         'GaussianHMM', 'CategoricalHMM', 'PoissonHMM']


def python(code):
    "Run `code` in a fresh interpreter (so that nothing is imported already) and return its stdout."
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_import_is_light():
    out = python(f"import sys, klem_nb; print(klem_nb.__version__, *[m for m in {HEAVY!r} if m in sys.modules])")
    assert len(out) == 1, f"import klem_nb imported {out[1:]}"
    assert out == python("import klem_nb; print(klem_nb.__version__)")


def test_public_names_and_their_modules():
    import klem_nb
    from klem_nb import BernoulliMixture, GaussianMixture, Ledger, PoissonMixture, em
    from klem_nb.discrete import BernoulliMixture as B, PoissonMixture as P
    from klem_nb.em import Ledger as L, em as engine
    from klem_nb.gmm import GaussianMixture as G
    from klem_nb import GaussianMixtureIC
    from klem_nb.selection import GaussianMixtureIC as S
    assert (GaussianMixture, BernoulliMixture, PoissonMixture, em, Ledger, GaussianMixtureIC) == (G, B, P, engine, L, S)
    assert sorted(klem_nb.__all__) == sorted(NAMES) and set(NAMES) <= set(dir(klem_nb))
    assert callable(em) and klem_nb.em is engine   # the function, although klem_nb.em is also a submodule
    assert sys.modules['klem_nb.em'].em is engine


@pytest.mark.parametrize('name', NAMES)
def test_each_name_imports_only_what_it_needs(name):
    "`from klem_nb import X` works in a fresh interpreter; the estimators and the engine need no matplotlib."
    out = python(f"import sys; from klem_nb import {name}; print({name}.__name__, 'matplotlib' in sys.modules)")
    assert out == [name, 'False']


def test_em_stays_the_function_after_the_submodule_is_imported():
    out = python("import klem_nb.em, klem_nb.gmm; import klem_nb; from klem_nb import em; "
                 "print(callable(em), em is klem_nb.em, type(klem_nb.em).__name__)")
    assert out == ['True', 'True', 'function']


def test_unknown_name():
    import klem_nb
    with pytest.raises(AttributeError, match="module 'klem_nb' has no attribute 'NoSuchMixture'"):
        klem_nb.NoSuchMixture
    with pytest.raises(ImportError, match='NoSuchMixture'):
        from klem_nb import NoSuchMixture  # noqa: F401

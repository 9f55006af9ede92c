"""The package as users install it: build the sdist and wheel, install the wheel into fresh virtual environments
that have no nbdev, Jupyter or test tools, and use it there.

Two environments: the newest releases of the runtime requirements, and the oldest releases that settings.ini
allows (each `name>=X.Y` pinned to `name==X.Y.*`), so the lower bounds we publish are ones we have run.
"""
import configparser, json, re, subprocess, sys, venv, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CFG = configparser.ConfigParser(delimiters=['='])
CFG.read(ROOT/'settings.ini')
REQUIREMENTS = CFG['DEFAULT']['requirements'].split()
DEV_TOOLS = ['nbdev', 'fastcore', 'execnb', 'IPython', 'ipykernel', 'jupyter_core', 'pytest', 'hypothesis']


def oldest(req):
    "'numpy>=1.23' -> 'numpy==1.23.*'"
    name, low = re.fullmatch(r'([\w-]+)>=([\d.]+)', req).groups()
    return f'{name}=={low}.*'


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, '-m', 'build', '--outdir', str(out), str(ROOT)], check=True, capture_output=True)
    wheel, = out.glob('*.whl')
    sdist, = out.glob('*.tar.gz')
    return wheel, sdist


def test_wheel_contents(dist):
    wheel, _ = dist
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT/'klem_nb').glob('*.py'))
    assert modules and all(m in names for m in modules), set(modules) - set(names)
    assert {'klem_nb/data/faithful.csv', 'klem_nb/data/deaths_london_1910_1912.csv'} <= set(names)
    assert not [n for n in names if n.startswith(('nbs/', 'tests/', 'tools/', 'bench/')) or n.endswith('.ipynb')]
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('dist-info/METADATA'))).decode()
    runtime = sorted(l.split(': ', 1)[1] for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l)
    assert runtime == sorted(REQUIREMENTS)
    assert f"Version: {CFG['DEFAULT']['version']}" in meta and 'License: Apache-2.0' in meta
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert re.search(r'^klem\s*=\s*klem_nb\.cli:', entry, re.M), entry


@pytest.fixture(scope='module', params=['newest', 'oldest'])
def env(request, dist, tmp_path_factory):
    "A fresh venv with the wheel and only its runtime requirements (the newest, or the oldest allowed)."
    wheel, _ = dist
    d = tmp_path_factory.mktemp(f'venv-{request.param}')
    venv.create(d, with_pip=True)
    py = d/'bin'/'python'
    pins = [oldest(r) for r in REQUIREMENTS] if request.param == 'oldest' else []
    subprocess.run([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', *pins, str(wheel)],
                   check=True, capture_output=True)
    return d


USE = r'''
import importlib, json, pkgutil, sys
import klem_nb
heavy = [m for m in HEAVY if m in sys.modules]
assert not heavy, f"import klem_nb imported {heavy}"
assert not {'sklearn', 'scipy', 'matplotlib'} & set(sys.modules), "import klem_nb is not lazy"
mods = [m.name for m in pkgutil.iter_modules(klem_nb.__path__, 'klem_nb.')]
for m in mods: importlib.import_module(m)
heavy = [m for m in HEAVY if m in sys.modules]
assert not heavy, f"importing klem_nb's modules imported {heavy}"
from klem_nb.datasets import load_faithful, load_deaths
from klem_nb.gmm import GaussianMixture
from klem_nb.discrete import BernoulliMixture, PoissonMixture
from klem_nb import GaussianMixture as G, BernoulliMixture as B, PoissonMixture as P, em, Ledger
assert (G, B, P, em, Ledger) == (GaussianMixture, BernoulliMixture, PoissonMixture, *(getattr(sys.modules['klem_nb.em'], n) for n in ('em', 'Ledger')))
X = load_faithful().data
g = GaussianMixture(2, random_state=0).fit(X)
deaths = load_deaths()
p = PoissonMixture(2, random_state=0).fit(deaths.data, sample_weight=deaths.days)
b = BernoulliMixture(2, random_state=0).fit((X > X.mean(0)).astype(int))
print(json.dumps({"modules": mods, "version": klem_nb.__version__,
                  "gmm_weights": sorted(g.weights_.tolist()), "poisson_means": sorted(p.means_.ravel().tolist()),
                  "bernoulli_converged": bool(b.converged_)}))
'''


def test_import_and_fit_in_clean_env(env):
    py = env/'bin'/'python'
    code = f'HEAVY = {DEV_TOOLS + ["matplotlib.pyplot"]!r}\n' + USE
    res = subprocess.run([py, '-c', code], capture_output=True, text=True, cwd=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['version'] == CFG['DEFAULT']['version']
    for m in ['klem_nb.divergences', 'klem_nb.em', 'klem_nb.gmm', 'klem_nb.discrete', 'klem_nb.cli']: assert m in out['modules']
    assert abs(sum(out['gmm_weights']) - 1) < 1e-12 and 0.3 < out['gmm_weights'][0] < 0.4   # the short eruptions
    lo, hi = out['poisson_means']
    assert 0.5 < lo < hi < 4   # Hasselblad's two death-rate regimes, roughly 1 and 2.5 per day
    assert out['bernoulli_converged']
    assert not any((env/'lib').glob('python*/site-packages/nbdev')), 'a dev tool was installed as a dependency'


def test_klem_cli_in_clean_env(env, tmp_path):
    res = subprocess.run([env/'bin'/'klem', 'fit', '--model', 'gmm', '-k', '2', '--seed', '0',
                          '--json', str(tmp_path/'fit.json')], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    fit = json.loads((tmp_path/'fit.json').read_text())
    assert fit['model'] == 'gmm' and len(fit['parameters']['weights']) == 2
    assert len(fit['ledger']) == 2 * fit['n_iter'] and fit['ledger'][0]['step'] == 'E'
    res = subprocess.run([env/'bin'/'klem', 'fit', str(tmp_path/'missing.csv')], capture_output=True, text=True)
    assert res.returncode == 2 and 'Traceback' not in res.stderr and len(res.stderr.strip().splitlines()) == 1


CHECKS = r'''
import warnings, sklearn
from sklearn.utils.estimator_checks import check_estimator
from klem_nb.gmm import GaussianMixture
warnings.simplefilter('ignore')
for t in ['full', 'tied', 'diag', 'spherical']: check_estimator(GaussianMixture(covariance_type=t))
print(sklearn.__version__)
'''


def test_estimator_checks_in_clean_env(env):
    "scikit-learn's own estimator checks, under the newest and under the oldest scikit-learn we allow."
    res = subprocess.run([env/'bin'/'python', '-c', CHECKS], capture_output=True, text=True, cwd=env)
    assert res.returncode == 0, res.stderr[-3000:]

"""Tests for klem_nb.selection (nbs/16_selection.ipynb has the tour): GaussianMixtureIC on the full grid of Old
Faithful, the degeneracy guard and what happens without it, shared starts, parallel runs, bad input, the plot.

Reference answer (issue 12): on Old Faithful mclust picks EEE (tied) with 3 components, log L = -1126.316."""
import math
import subprocess
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from klem_nb.datasets import load_faithful  # noqa: E402
from klem_nb.gmm import GaussianMixture  # noqa: E402
from klem_nb.selection import (GaussianMixtureIC, component_parameters, degeneracy, n_parameters,  # noqa: E402
                               plot_criterion, shared_start)

X = load_faithful().data
N, D = X.shape
X20 = np.vstack([X, np.repeat(X[:1], 20, axis=0)])     # Old Faithful and 20 copies of its first row
TYPES = ('full', 'tied', 'diag', 'spherical')
COLUMNS = ['n_components', 'covariance_type', 'bic', 'log_likelihood', 'n_parameters', 'converged', 'rejected',
           'n_starts', 'n_degenerate']


def log_likelihood(gm, data=X): return float(gm.score_samples(data).sum())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


SEED = 5     # with this seed, one of the five starts of diag k = 5 ends on the pinned fit


@pytest.fixture(scope='module')
def default_fit():
    "The full grid (k = 1..9, four types) at the default settings."
    return GaussianMixtureIC(random_state=SEED).fit(X)


@pytest.fixture(scope='module')
def unguarded():
    "The same grid, seeds and runs, chosen without the guard."
    return GaussianMixtureIC(random_state=SEED, guard=False).fit(X)


@pytest.fixture(scope='module')
def scans20():
    "The full grid on Old Faithful with 20 identical rows added, without and with the guard."
    return GaussianMixtureIC(guard=False, random_state=0).fit(X20), GaussianMixtureIC(random_state=0).fit(X20)


# ---- the answer on Old Faithful -------------------------------------------------------------------

def test_faithful_selects_tied_three(default_fit):
    sel = default_fit
    assert (sel.n_components_, sel.covariance_type_) == (3, 'tied')
    assert isinstance(sel.best_estimator_, GaussianMixture)
    assert (sel.best_estimator_.n_components, sel.best_estimator_.covariance_type) == (3, 'tied')
    np.testing.assert_allclose(log_likelihood(sel.best_estimator_), -1126.316, atol=1e-2)
    np.testing.assert_allclose(sel.results_['bic'][sel.best_index_], 2 * 1126.316 + 11 * math.log(272), atol=2e-2)


def test_results_table(default_fit):
    r = default_fit.results_
    assert list(r) == COLUMNS
    assert {len(v) for v in r.values()} == {9 * 4}
    assert r['n_components'] == [k for k in range(1, 10) for _ in TYPES]
    assert r['covariance_type'] == list(TYPES) * 9
    for i in range(len(r['bic'])):
        assert r['n_parameters'][i] == n_parameters(r['n_components'][i], D, r['covariance_type'][i])
        np.testing.assert_allclose(r['bic'][i], -2 * r['log_likelihood'][i] + r['n_parameters'][i] * math.log(N),
                                   rtol=1e-12)
        assert isinstance(r['rejected'][i], str) and isinstance(r['converged'][i], bool)
        assert 1 <= r['n_starts'][i] <= 5 and 0 <= r['n_degenerate'][i] <= r['n_starts'][i]
    eligible = [i for i, why in enumerate(r['rejected']) if not why]
    assert default_fit.best_index_ == min(eligible, key=r['bic'].__getitem__)
    assert r['n_starts'][:4] == [1] * 4            # k = 1: every k-means start is the same start, fitted once
    np.testing.assert_allclose(r['bic'][default_fit.best_index_], default_fit.best_estimator_.bic(X), rtol=1e-12)


def test_scikit_learn_defaults_stop_short():
    "The reason for tol=1e-6: at tol=1e-3 the tied k = 3 fit stops at log L = -1140.55 (the issue's number)."
    early = GaussianMixture(3, covariance_type='tied', random_state=0).fit(X)
    tight = GaussianMixture(3, covariance_type='tied', random_state=0, tol=1e-6, max_iter=1000).fit(X)
    np.testing.assert_allclose(log_likelihood(early), -1140.55, atol=5e-3)
    np.testing.assert_allclose(log_likelihood(tight), -1126.316, atol=1e-2)


# ---- the guard --------------------------------------------------------------------------------------

def test_unguarded_scan_picks_a_pinned_component(unguarded, default_fit):
    "Mutation check: the same runs, chosen without the guard, give diag k = 5 with a component on waiting = 83."
    guarded = default_fit
    assert (unguarded.n_components_, unguarded.covariance_type_) == (5, 'diag')
    pinned = unguarded.best_estimator_
    reason = degeneracy(pinned, N)
    assert 'collapsed' in reason
    j = int(np.argmin(pinned.covariances_.min(axis=1)))
    rows = pinned.predict(X) == j
    assert rows.sum() == 14 and (X[rows, 1] == 83).all()
    np.testing.assert_allclose(pinned.covariances_[j, 1], 1e-6, rtol=1e-6)
    assert all(why == '' for why in unguarded.results_['rejected'])
    assert (guarded.n_components_, guarded.covariance_type_) == (3, 'tied')
    np.testing.assert_allclose(log_likelihood(guarded.best_estimator_), -1126.316, atol=1e-2)
    assert unguarded.results_['n_degenerate'] == guarded.results_['n_degenerate']
    i = guarded.results_['n_components'].index(5) + 2                     # k = 5, diag
    assert guarded.results_['covariance_type'][i] == 'diag' and guarded.results_['n_degenerate'][i] >= 1
    assert degeneracy(guarded.best_estimator_, N) == ''


def test_twenty_identical_rows(scans20):
    unguarded, guarded = scans20
    assert (guarded.n_components_, guarded.covariance_type_) == (3, 'tied')
    assert degeneracy(guarded.best_estimator_, len(X20)) == ''
    pinned = unguarded.best_estimator_
    assert 'collapsed' in degeneracy(pinned, len(X20))
    on_copies = np.flatnonzero(np.abs(pinned.means_ - X[0]).max(axis=1) < 1e-6)    # a component sits on the copies,
    assert len(on_copies) == 1 and pinned.weights_[on_copies[0]] * len(X20) > 20       # holding all 21 equal rows
    cov = np.asarray(pinned.covariances_)[on_copies[0]]
    assert (cov < 10 * pinned.reg_covar).all()                                          # at the floor every way
    assert unguarded.results_['bic'][unguarded.best_index_] < guarded.results_['bic'][guarded.best_index_] - 400
    rejected = [i for i, why in enumerate(guarded.results_['rejected']) if why]
    assert rejected and all('collapsed' in guarded.results_['rejected'][i] for i in rejected)
    assert all(guarded.results_['n_degenerate'][i] == guarded.results_['n_starts'][i] for i in rejected)


def test_degeneracy_rules():
    gm = GaussianMixture(2, covariance_type='full', random_state=0).fit(X)
    assert degeneracy(gm, N) == ''
    gm.weights_ = np.array([4 / N, 1 - 4 / N])
    assert degeneracy(gm, N) == "component 0 holds 4 effective points, fewer than its 5 free parameters"
    gm.weights_ = np.array([6 / N, 1 - 6 / N])
    assert degeneracy(gm, N) == ''
    cov = gm.covariances_.copy()
    cov[1] = np.diag([0.5, 9e-6])                                     # below 10 × reg_covar in one direction
    gm.covariances_ = cov
    assert degeneracy(gm, N).startswith("component 1 collapsed")
    assert degeneracy(gm, N, collapse_factor=5) == ''                 # 9e-6 is above 5 × 1e-6
    assert degeneracy(gm, N, floor=1e-7) == ''
    assert [component_parameters(2, t) for t in TYPES] == [5, 2, 4, 3]
    assert [component_parameters(3, t) for t in TYPES] == [9, 3, 6, 4]


def test_n_parameters_match_the_estimators():
    for t in TYPES:
        for k in (1, 3):
            gm = GaussianMixture(k, covariance_type=t, random_state=0).fit(X)
            np.testing.assert_allclose(-2 * log_likelihood(gm) + n_parameters(k, D, t) * math.log(N), gm.bic(X),
                                       rtol=1e-12)


def test_every_candidate_rejected_is_a_value_error():
    "A constant feature collapses every component: no candidate is left, and the selector stays as it was."
    Xc = np.column_stack([X[:, 0], np.full(N, 2.0)])
    sel = GaussianMixtureIC(max_components=2, covariance_types=('full', 'diag'), n_init=1, random_state=0)
    with pytest.raises(ValueError, match='every candidate was rejected'), pytest.warns(UserWarning, match='reg_covar'):
        sel.fit(Xc)
    assert not hasattr(sel, 'results_') and not hasattr(sel, 'n_features_in_')


# ---- shared starts and parallel runs ---------------------------------------------------------------------

@pytest.mark.parametrize('covariance_type', TYPES)
def test_shared_start_is_scikit_learns_start(covariance_type):
    "A fit from the shared start is the fit GaussianMixture makes from its own k-means start, same seed."
    start, _ = shared_start(X, 4, 'kmeans', seed=11)
    ours = GaussianMixture(4, covariance_type=covariance_type, tol=1e-6, max_iter=1000).fit(X, start=start)
    own = GaussianMixture(4, covariance_type=covariance_type, tol=1e-6, max_iter=1000, random_state=11).fit(X)
    np.testing.assert_allclose(log_likelihood(ours), log_likelihood(own), rtol=1e-9)
    assert ours.n_iter_ == own.n_iter_


def test_equal_starts_have_equal_keys():
    a, ka = shared_start(X, 3, 'kmeans', seed=1)
    b, kb = shared_start(X, 3, 'kmeans', seed=2)
    assert (ka == kb) == np.array_equal(a.labels, b.labels)
    assert a.labels[0] == 0 and set(a.labels) == {0, 1, 2}            # renumbered by first appearance
    assert shared_start(X, 3, 'random', seed=1)[1] is None
    s, key = shared_start(X, 3, 'k-means++', seed=1)
    assert (np.diff(s.seeds) > 0).all() and key is not None


def test_parallel_runs_give_identical_results():
    kw = dict(max_components=4, n_init=3, random_state=5)
    one = GaussianMixtureIC(n_jobs=1, **kw).fit(X)
    two = GaussianMixtureIC(n_jobs=2, **kw).fit(X)
    assert one.results_ == two.results_                               # bit for bit, floats included
    for name in ('weights_', 'means_', 'covariances_'):
        np.testing.assert_array_equal(getattr(one.best_estimator_, name), getattr(two.best_estimator_, name))


def test_grid_bounds_do_not_change_a_candidate(default_fit):
    "Starts depend on k and random_state only: a sub-grid repeats the full grid's rows."
    sub = GaussianMixtureIC(min_components=3, max_components=4, covariance_types=('tied', 'diag'),
                            random_state=SEED).fit(X)
    full = default_fit.results_
    for i in range(len(sub.results_['bic'])):
        k, t = sub.results_['n_components'][i], sub.results_['covariance_type'][i]
        j = [a for a in range(len(full['bic'])) if full['n_components'][a] == k and full['covariance_type'][a] == t][0]
        assert sub.results_['log_likelihood'][i] == full['log_likelihood'][j]


# ---- estimator API ------------------------------------------------------------------------------------

def test_delegates_to_the_best(default_fit):
    sel, best = default_fit, default_fit.best_estimator_
    np.testing.assert_array_equal(sel.predict(X), best.predict(X))
    np.testing.assert_array_equal(sel.predict_proba(X), best.predict_proba(X))
    np.testing.assert_array_equal(sel.score_samples(X), best.score_samples(X))
    assert sel.score(X) == best.score(X) and sel.n_features_in_ == 2


def test_refitting_the_best_repeats_it(default_fit):
    again = clone(default_fit.best_estimator_).fit(X)
    np.testing.assert_allclose(log_likelihood(again), log_likelihood(default_fit.best_estimator_), rtol=1e-12)


def test_aic():
    sel = GaussianMixtureIC(max_components=4, criterion='aic', random_state=0).fit(X)
    assert 'aic' in sel.results_ and 'bic' not in sel.results_
    r = sel.results_
    for i in range(len(r['aic'])):
        np.testing.assert_allclose(r['aic'][i], -2 * r['log_likelihood'][i] + 2 * r['n_parameters'][i], rtol=1e-12)
    np.testing.assert_allclose(r['aic'][sel.best_index_], sel.best_estimator_.aic(X), rtol=1e-12)


def test_clone_and_params():
    sel = GaussianMixtureIC(2, 5, covariance_types=('tied',), criterion='aic', n_jobs=2, random_state=3)
    params = clone(sel).get_params()
    assert params['covariance_types'] == ('tied',) and params['min_components'] == 2 and params['n_jobs'] == 2
    assert params == sel.get_params()
    with pytest.raises(NotFittedError):
        sel.predict(X)
    one = GaussianMixtureIC(max_components=2, covariance_types='tied', random_state=0).fit(X)   # one type as a str
    assert one.results_['covariance_type'] == ['tied', 'tied']


def test_scikit_learn_estimator_checks():
    "scikit-learn's check_estimator, on a small grid (the checks fit many tiny data sets)."
    import warnings
    from sklearn.utils.estimator_checks import check_estimator
    est = GaussianMixtureIC(max_components=2, covariance_types=('diag',), n_init=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        results = check_estimator(est, on_fail=None)
    failed = [(r['check_name'], str(r['exception'])[:200]) for r in results if r['status'] == 'failed']
    assert len(results) > 30 and not failed, failed


def test_float32():
    sel = GaussianMixtureIC(max_components=3, covariance_types=('tied',), random_state=0).fit(X.astype(np.float32))
    assert sel.n_components_ == 3
    np.testing.assert_allclose(sel.results_['log_likelihood'][sel.best_index_], -1126.316, atol=5e-2)


def test_docstring_lists_every_parameter_and_attribute(default_fit):
    import inspect
    import re
    doc = inspect.getdoc(GaussianMixtureIC)
    params = set(re.findall(r'^(\w+) :', doc.split('Parameters\n----------\n')[1].split('Attributes\n')[0], flags=re.M))
    assert set(inspect.signature(GaussianMixtureIC).parameters) == params
    attributes = set(re.findall(r'^(\w+) :', doc.split('Attributes\n----------\n')[1].split('Examples\n')[0], flags=re.M))
    assert {a for a in vars(default_fit) if a.endswith('_') and not a.startswith('_')} == attributes


# ---- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('params, message', [
    (dict(min_components=4, max_components=3), r'min_components \(4\) must be <= max_components \(3\)'),
    (dict(criterion='icl'), "'criterion' parameter"),
    (dict(criterion='BIC'), "'criterion' parameter"),
    (dict(covariance_types=('full', 'ball')), 'covariance_types'),
    (dict(covariance_types=()), 'covariance_types'),
    (dict(covariance_types=('tied', 'tied')), 'covariance_types'),
    (dict(max_components=273), r'max_components \(273\) must be <= n_samples \(272\)'),
    (dict(min_components=0), "'min_components' parameter"),
    (dict(n_init=0), "'n_init' parameter"),
    (dict(reg_covar=-1.0), "'reg_covar' parameter"),
])
def test_bad_input_names_the_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixtureIC(**params).fit(X)


def test_failed_fit_leaves_the_selector_as_it_was():
    sel = GaussianMixtureIC(max_components=2, covariance_types=('tied',), random_state=0).fit(X)
    before = (sel.results_, sel.best_estimator_, sel.n_components_, sel.n_features_in_)
    sel.set_params(max_components=300)
    with pytest.raises(ValueError, match='max_components'):
        sel.fit(X)
    assert (sel.results_, sel.best_estimator_, sel.n_components_, sel.n_features_in_) == before
    with pytest.raises(ValueError, match='features'):
        sel.predict(X[:, :1])


# ---- the plot --------------------------------------------------------------------------------------------

def test_plot_criterion(scans20):
    _, guarded = scans20
    ax = plot_criterion(guarded)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:1] == ['full'] and 'rejected (degenerate)' in labels and 'chosen: tied, k=3' in labels
    crosses = [line for line in ax.get_lines() if line.get_marker() == 'x' and len(line.get_xdata())]
    n_rejected = sum(bool(why) for why in guarded.results_['rejected'])
    assert sum(len(line.get_xdata()) for line in crosses) == n_rejected > 0
    assert ax.get_ylabel() == 'BIC (lower is better)'
    fig, ax2 = plt.subplots()
    assert plot_criterion(guarded.results_, ax=ax2) is ax2


def test_import_does_not_import_pyplot():
    code = "import klem_nb.selection, sys; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, '-c', code], check=True)


# ---- the `klem select` command --------------------------------------------------------------------------------

def klem(*args, cwd=None):
    "Run `python -m klem_nb.cli args...` in a separate process."
    return subprocess.run([sys.executable, '-m', 'klem_nb.cli', *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_klem_select_prints_the_table_and_writes_the_plot(tmp_path):
    proc = klem('select', '--max-components', '4', '--covariance-types', 'tied,diag', '--plot', tmp_path/'bic.png')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('klem select: Gaussian mixtures, k = 1..4, tied, diag, by BIC; data bundled:faithful')
    table = [line.split() for line in lines[2:11]]
    assert table[0] == ['k', 'type', 'BIC', 'log-likelihood', 'parameters', 'converged', 'starts', 'degenerate']
    assert [(row[0], row[1]) for row in table[1:]] == [(str(k), t) for k in range(1, 5) for t in ('tied', 'diag')]
    chosen = [row for row in table[1:] if row[-1] == 'chosen']
    assert len(chosen) == 1 and chosen[0][:2] == ['3', 'tied']
    np.testing.assert_allclose(float(chosen[0][3]), -1126.316, atol=1e-2)
    assert 'chosen: k=3, covariance_type=tied' in proc.stdout and f"wrote {tmp_path/'bic.png'}" in proc.stdout
    assert (tmp_path/'bic.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_klem_select_on_a_file_with_aic(tmp_path):
    np.savetxt(tmp_path/'faithful.csv', X, delimiter=',', header='eruptions,waiting', comments='', fmt='%g')
    proc = klem('select', tmp_path/'faithful.csv', '--max-components', '3', '--criterion', 'aic', '--no-guard',
                '--n-init', '2')
    assert proc.returncode == 0, proc.stderr
    assert 'by AIC' in proc.stdout and ' AIC ' in proc.stdout.splitlines()[2] and 'chosen: k=' in proc.stdout


@pytest.mark.parametrize('args, message', [
    (['--min-components', '5', '--max-components', '3'], '--min-components 5 is larger than --max-components 3'),
    (['--max-components', '300'], '--max-components 300 asks for more components than bundled:faithful has rows (272)'),
    (['--covariance-types', 'full,ball'], 'covariance-types must be names among'),
    (['--criterion', 'icl'], "invalid choice: 'icl'"),
    (['--plot', 'no/such/folder/bic.png'], 'does not exist'),
])
def test_klem_select_errors(args, message, tmp_path):
    proc = klem('select', *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == '' and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('klem: error: ') and proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr

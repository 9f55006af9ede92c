"""Tests for the `klem` console script (klem_nb.cli; nbs/18_cli.ipynb has the tour).

Most cases run the installed `klem` script, or `python -m klem_nb.cli`, in a separate process, as a user would."""
import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from klem_nb import __version__
from klem_nb.cli import LedgerPrinter, main

LEDGER_KEYS = ['free_energy', 'iteration', 'kl_gap', 'log_likelihood', 'step']


def klem_executable():
    "The `klem` script next to this Python (as pip installs it), else the first one on PATH."
    here = Path(sys.executable).parent / ('klem.exe' if os.name == 'nt' else 'klem')
    found = str(here) if here.exists() else shutil.which('klem')
    assert found, "no `klem` script: install the package (pip install -e .) so settings.ini's console_scripts exist"
    return found


def run(*args, module=False, cwd=None):
    "Run `klem args...` (or `python -m klem_nb.cli args...`) and return the CompletedProcess."
    cmd = [sys.executable, '-m', 'klem_nb.cli'] if module else [klem_executable()]
    env = {**os.environ, 'PYTHONWARNINGS': 'default'}
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def check_report(fit, model, k, d):
    "Assert that a `klem fit --json` report has exactly the documented schema."
    keys = ['model', 'n_components'] + (['covariance_type'] if model == 'gmm' else []) + [
        'data', 'converged', 'n_iter', 'lower_bound', 'parameters', 'bic', 'aic', 'ledger']
    assert sorted(fit) == sorted(keys)
    assert (fit['model'], fit['n_components']) == (model, k)
    assert sorted(fit['data']) == ['columns', 'n_features', 'n_samples', 'path']
    assert fit['data']['n_features'] == d and len(fit['data']['columns']) == d
    assert isinstance(fit['data']['n_samples'], int) and isinstance(fit['data']['path'], str)
    params = fit['parameters']
    assert sorted(params) == (['covariances', 'means', 'weights'] if model == 'gmm' else ['means', 'weights'])
    assert np.shape(params['weights']) == (k,) and np.shape(params['means']) == (k, d)
    np.testing.assert_allclose(sum(params['weights']), 1, rtol=1e-12)
    if model == 'gmm':
        shape = {'full': (k, d, d), 'tied': (d, d), 'diag': (k, d), 'spherical': (k,)}[fit['covariance_type']]
        assert np.shape(params['covariances']) == shape
    assert isinstance(fit['converged'], bool) and isinstance(fit['n_iter'], int) and fit['n_iter'] >= 1
    assert all(isinstance(fit[key], float) for key in ('lower_bound', 'bic', 'aic'))
    ledger = fit['ledger']
    assert len(ledger) == 2 * fit['n_iter']
    assert [r['step'] for r in ledger] == ['E', 'M'] * fit['n_iter']
    assert [r['iteration'] for r in ledger] == [t for t in range(1, fit['n_iter'] + 1) for _ in 'EM']
    for r in ledger:
        assert sorted(r) == LEDGER_KEYS
        assert isinstance(r['iteration'], int) and all(isinstance(r[f], float) for f in LEDGER_KEYS if f not in
                                                       ('iteration', 'step'))
        np.testing.assert_allclose(r['free_energy'], -r['log_likelihood'] + r['kl_gap'], rtol=1e-10, atol=1e-12)
    # the lower bound is the log-likelihood of the last E-step; EM never lowers it
    np.testing.assert_allclose(fit['lower_bound'], ledger[-2]['log_likelihood'], rtol=1e-12)
    e_rows = np.array([r['log_likelihood'] for r in ledger if r['step'] == 'E'])
    assert (np.diff(e_rows) >= -1e-10 * np.abs(e_rows[1:])).all()


def assert_one_line_error(proc):
    "Exit status 2, one `klem: error:` line on stderr, nothing on stdout, no traceback."
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr + proc.stdout
    assert proc.stderr.startswith('klem: error: ') and proc.stderr.count('\n') == 1, proc.stderr
    assert proc.stdout == ''


# ---- data files -----------------------------------------------------------------------------------

def write_csv(path, X, columns, fmt='%g'):
    np.savetxt(path, X, fmt=fmt, delimiter=',', comments='', header=','.join(columns))
    return path


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "Temporary CSV files: good data for each model and the broken ones."
    tmp = tmp_path_factory.mktemp('klem')
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, size=200)
    gauss = rng.normal(size=(200, 3)) + 4.0 * z[:, None] * np.array([1.0, -1.0, 0.5])
    protos = np.array([[0.9, 0.9, 0.1, 0.1, 0.8], [0.1, 0.2, 0.9, 0.8, 0.3]])
    binary = (rng.random((200, 5)) < protos[z]).astype(int)
    counts = rng.poisson(np.array([[1.0, 6.0], [8.0, 2.0]])[z])
    f = dict(gauss=write_csv(tmp/'gauss.csv', gauss, ['x', 'y', 'w']),
             binary=write_csv(tmp/'binary.csv', binary, [f'b{i}' for i in range(5)], fmt='%d'),
             counts=write_csv(tmp/'counts.csv', counts, ['c1', 'c2'], fmt='%d'),
             halves=tmp/'halves.csv', negative=tmp/'negative.csv', empty=tmp/'empty.csv', header_only=tmp/'header.csv',
             words=tmp/'words.csv', ragged=tmp/'ragged.csv', tiny=tmp/'tiny.csv', missing=tmp/'missing.csv', dir=tmp, no_csv=tmp/'no_csv')
    f['no_csv'].mkdir()
    f['halves'].write_text('a,b\n1,0\n0.5,1\n0,0\n')
    f['negative'].write_text('c\n3\n-1\n2\n')
    f['empty'].write_text('')
    f['header_only'].write_text('x,y\n')
    f['words'].write_text('x,y\n1,2\nthree,4\n')
    f['ragged'].write_text('x,y\n1,2\n3\n')
    f['tiny'].write_text('x,y\n1,2\n3,4\n5,7\n')
    f['bare'] = tmp/'bare.csv'
    np.savetxt(f['bare'], counts, fmt='%d', delimiter=',')      # the counts without their header row
    return f


# ---- success --------------------------------------------------------------------------------------

def test_help_and_version(capsys):
    assert main(['--help']) == 0
    top = capsys.readouterr().out
    assert 'usage: klem' in top and 'fit' in top and '--version' in top
    fit = run('fit', '--help')
    assert fit.returncode == 0
    for word in ('--model', '--covariance-type', '--max-iter', '--tol', '--seed', '--plot', '--json', 'Old Faithful',
                 'deaths', 'bernoulli', '--header', '--no-header', 'x0, x1'):
        assert word in fit.stdout, word
    version = run('--version')
    assert version.returncode == 0 and version.stdout.strip() == f'klem (klem_nb) {__version__}'


def test_default_fit_on_bundled_faithful(tmp_path):
    proc = run('fit', '--json', tmp_path/'fit.json')
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr
    fit = json.loads((tmp_path/'fit.json').read_text())
    check_report(fit, 'gmm', 2, 2)
    assert fit['data'] == dict(path='bundled:faithful', n_samples=272, n_features=2, columns=['eruptions', 'waiting'])
    assert fit['covariance_type'] == 'full' and fit['converged']
    out = proc.stdout.splitlines()
    assert out[0].startswith('klem fit: Gaussian mixture, k=2, covariance_type=full; data bundled:faithful')
    # not a terminal: a header, then one line per half-step matching the ledger
    head = out.index(LedgerPrinter.header)
    rows = [line.split() for line in out[head + 1: head + 1 + len(fit['ledger'])]]
    for cells, r in zip(rows, fit['ledger']):
        assert (int(cells[0]), cells[1]) == (r['iteration'], r['step'])
        np.testing.assert_allclose([float(c) for c in cells[2:]], [r['log_likelihood'], r['free_energy'], r['kl_gap']],
                                   rtol=1e-9, atol=1e-3)
    text = proc.stdout
    for piece in ('weight', 'mean eruptions', 'mean waiting', 'covariance of component 1', 'converged: yes',
                  'lower bound', 'BIC:', 'AIC:'):
        assert piece in text, piece
    np.testing.assert_allclose(sorted(fit['parameters']['weights']), [0.356, 0.644], atol=0.005)
    from klem_nb.datasets import load_faithful
    from klem_nb.gmm import GaussianMixture
    X = load_faithful().data
    ref = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(fit['parameters']['means'], ref.means_, rtol=1e-10)
    np.testing.assert_allclose([fit['bic'], fit['aic']], [ref.bic(X), ref.aic(X)], rtol=1e-10)


def test_plot_writes_png_and_matplotlib_only_with_plot(tmp_path):
    proc = run('fit', '-k', '3', '--covariance-type', 'tied', '--plot', tmp_path/'fit.png')
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path/'fit.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f"wrote {tmp_path/'fit.png'}" in proc.stdout
    # help needs no scikit-learn, and a fit without --plot no matplotlib
    probe = ("import sys, io, contextlib; from klem_nb.cli import main; out = io.StringIO()\n"
             "with contextlib.redirect_stdout(out): helped = main(['fit', '--help'])\n"
             "light = 'sklearn' not in sys.modules\n"
             "with contextlib.redirect_stdout(out): status = main(['fit'])\n"
             "print(helped, light, status, 'matplotlib' in sys.modules)")
    proc = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ['0', 'True', '0', 'False'], proc.stdout + proc.stderr


@pytest.mark.parametrize('model, key, k, extra', [
    ('gmm', 'gauss', 2, ['--covariance-type', 'spherical']),
    ('gmm', 'gauss', 3, ['--covariance-type', 'diag', '--max-iter', '500', '--tol', '1e-6', '--seed', '3']),
    ('bernoulli', 'binary', 2, []),
    ('poisson', 'counts', 2, []),
])
def test_each_model_on_a_csv_file(files, tmp_path, model, key, k, extra):
    proc = run('fit', files[key], '--model', model, '-k', k, '--json', tmp_path/'fit.json',
               '--plot', tmp_path/'fit.png', *extra)
    assert proc.returncode == 0, proc.stderr
    fit = json.loads((tmp_path/'fit.json').read_text())
    d = {'gauss': 3, 'binary': 5, 'counts': 2}[key]
    check_report(fit, model, k, d)
    assert fit['data']['path'] == str(files[key]) and fit['data']['n_samples'] == 200
    assert (tmp_path/'fit.png').stat().st_size > 10_000
    label = {'gmm': 'mean x', 'bernoulli': 'P(b0 = 1)', 'poisson': 'rate c1'}[model]
    assert label in proc.stdout
    if model == 'bernoulli': assert all(0 <= m <= 1 for row in fit['parameters']['means'] for m in row)
    if model == 'poisson':  # the two rates of each column are recovered, in some order
        means = np.array(fit['parameters']['means'])
        np.testing.assert_allclose(means[np.argsort(means[:, 0])], [[1, 6], [8, 2]], atol=0.8)


def test_poisson_on_bundled_deaths(tmp_path):
    proc = run('fit', '--model', 'poisson', '--tol', '1e-8', '--max-iter', '3000', '--json', tmp_path/'d.json',
               module=True)
    assert proc.returncode == 0, proc.stderr
    fit = json.loads((tmp_path/'d.json').read_text())
    check_report(fit, 'poisson', 2, 1)
    assert fit['data'] == dict(path='bundled:deaths', n_samples=1096, n_features=1, columns=['deaths_per_day'])
    order = np.argsort(np.ravel(fit['parameters']['means']))
    np.testing.assert_allclose(np.ravel(fit['parameters']['means'])[order], [1.26, 2.66], atol=0.03)
    assert '1096 samples (10 rows weighted by their counts)' in proc.stdout
    from klem_nb.datasets import load_deaths
    from klem_nb.discrete import PoissonMixture
    b = load_deaths()
    ref = PoissonMixture(2, tol=1e-8, max_iter=3000, random_state=0).fit(b.data, sample_weight=b.days)
    np.testing.assert_allclose(fit['bic'], ref.bic(b.expanded), rtol=1e-10)   # BIC counts the 1096 days


def test_not_converged_is_a_warning_not_an_error(tmp_path):
    proc = run('fit', '--max-iter', '2', '--tol', '0', '--json', tmp_path/'f.json')
    assert proc.returncode == 0
    assert proc.stderr.strip() == 'klem: warning: EM did not converge in 2 iterations (tol 0); try a larger --max-iter or --tol'
    fit = json.loads((tmp_path/'f.json').read_text())
    assert (fit['converged'], fit['n_iter'], len(fit['ledger'])) == (False, 2, 4)
    assert 'converged: no, after 2 iterations' in proc.stdout


def test_closed_pipe_is_not_a_traceback():
    "`klem fit | head -1`: the reader leaves early; the command stops quietly."
    proc = subprocess.Popen([klem_executable(), 'fit', '--model', 'poisson', '--tol', '0', '--max-iter', '3000'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith('klem fit: Poisson mixture')
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in err and 'Error' not in err, err


def test_python_dash_m():
    proc = run('fit', '-k', '1', module=True)
    assert proc.returncode == 0 and 'converged: yes' in proc.stdout, proc.stderr


# ---- errors ---------------------------------------------------------------------------------------

# The cases the command must refuse. The first group runs through the installed `klem` script (a process each, run
# concurrently); the second through `main` in this process, which is the same code path after the imports.
SCRIPT_ERRORS = {
    'missing file': (['fit', '{missing}'], 'missing.csv not found'),
    'empty file': (['fit', '{empty}'], 'is empty'),
    'non-numeric column': (['fit', '{words}'], "non-numeric cell 'three'"),
    'bad model': (['fit', '--model', 'kmeans'], "invalid choice: 'kmeans'"),
    'k = 0': (['fit', '-k', '0'], 'k must be at least 1'),
    'k > n_samples': (['fit', '{tiny}', '-k', '4'], 'more components than'),
    'bad covariance type': (['fit', '--covariance-type', 'round'], "invalid choice: 'round'"),
    'negative tol': (['fit', '--tol', '-1'], 'tol must be a finite number >= 0'),
    'non-binary for bernoulli': (['fit', '{halves}', '--model', 'bernoulli'], 'needs only 0 and 1 values'),
    'fractions for poisson': (['fit', '{halves}', '--model', 'poisson'], 'has 0.5 in data row 2, column 1'),
}
MAIN_ERRORS = {
    'a folder without CSV files': (['fit', '{no_csv}'], 'no .csv files'),
    'header only': (['fit', '{header_only}'], 'no data rows'),
    'ragged rows': (['fit', '{ragged}'], 'ragged'),
    'k negative': (['fit', '-k', '-2'], 'k must be at least 1'),
    'k not a number': (['fit', '-k', 'two'], "k must be an integer, got 'two'"),
    'k > n bundled': (['fit', '-k', '273'], 'bundled:faithful has rows (272)'),
    'covariance type for poisson': (['fit', '--model', 'poisson', '--covariance-type', 'diag'], 'gmm only'),
    'tol not a number': (['fit', '--tol=abc'], 'tol must be a number'),
    'tol infinite': (['fit', '--tol', 'inf'], 'tol must be a finite number'),
    'max-iter 0': (['fit', '--max-iter', '0'], 'max-iter must be at least 1'),
    'seed negative': (['fit', '--seed', '-1'], 'seed must be at least 0'),
    'bernoulli without a file': (['fit', '--model', 'bernoulli'], 'needs a DATA.csv'),
    'negative for poisson': (['fit', '{negative}', '--model', 'poisson'], 'has -1 in data row 2'),
    'json into a missing folder': (['fit', '--json', '{dir}/no/such/fit.json'], 'does not exist'),
    'json onto a folder': (['fit', '--json', '{dir}'], 'is a folder'),
    'plot with an unknown suffix': (['fit', '--plot', '{dir}/fit.txt'], 'image suffix'),
    'unknown option': (['fit', '--colour'], 'unrecognized arguments: --colour'),
    'unknown command': (['predict'], "invalid choice: 'predict'"),
    'no command': ([], 'no command given'),
    'two files': (['fit', '{tiny}', '{tiny}'], 'unrecognized arguments'),
    'header for bundled data': (['fit', '--header'], '--header applies to a DATA.csv file'),
    'no-header for bundled data': (['fit', '--model', 'poisson', '--no-header'], '--no-header applies to a DATA.csv'),
    'header and no-header': (['fit', '{tiny}', '--header', '--no-header'], 'not allowed with argument --header'),
    'words read as data': (['fit', '{words}', '--no-header'], "line 1 (data row 1), column 1 ('x0'): non-numeric cell 'x'"),
}


@pytest.fixture(scope='module')
def script_error_runs(files):
    "Every SCRIPT_ERRORS case through the `klem` script, run concurrently (each is a separate process)."
    argvs = {name: [a.format(**files) for a in argv] for name, (argv, _) in SCRIPT_ERRORS.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(argvs, pool.map(lambda argv: run(*argv), argvs.values())))


@pytest.mark.parametrize('name', list(SCRIPT_ERRORS))
def test_script_errors_are_one_line_with_status_2(script_error_runs, name):
    proc = script_error_runs[name]
    assert_one_line_error(proc)
    assert SCRIPT_ERRORS[name][1] in proc.stderr, proc.stderr


@pytest.mark.parametrize('name', list(MAIN_ERRORS))
def test_main_errors_are_one_line_with_status_2(capsys, files, name):
    argv, expected = MAIN_ERRORS[name]
    status = main([a.format(**files) for a in argv])
    out = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess(argv, status, out.out, out.err))
    assert expected in out.err, out.err


# ---- in process -----------------------------------------------------------------------------------

def test_main_in_process(capsys, files, tmp_path):
    assert main(['fit', files['binary'], '--model', 'bernoulli', '-k', '2', '--json', tmp_path/'b.json']) == 0
    out = capsys.readouterr()
    assert out.err == '' and 'P(b4 = 1)' in out.out
    check_report(json.loads((tmp_path/'b.json').read_text()), 'bernoulli', 2, 5)
    assert main(['fit', files['words']]) == 2
    out = capsys.readouterr()
    assert out.out == '' and out.err.startswith('klem: error: ') and out.err.count('\n') == 1
    assert main(['--version']) == 0 and capsys.readouterr().out.strip() == f'klem (klem_nb) {__version__}'
    assert main(['fit', '-k', 'x']) == 2 and capsys.readouterr().err.count('\n') == 1


class FakeTerminal(io.StringIO):
    def isatty(self): return True


def test_live_display_on_a_terminal(monkeypatch, tmp_path):
    screen = FakeTerminal()
    monkeypatch.setattr(sys, 'stdout', screen)
    assert main(['fit', '--tol', '1e-6', '--json', tmp_path/'f.json']) == 0
    text = screen.getvalue()
    fit = json.loads((tmp_path/'f.json').read_text())
    assert LedgerPrinter.header not in text                      # no per-row lines
    live = text.split('\n')[1]
    frames = live.split('\r')[1:]
    assert 1 <= len(frames) <= 2 * fit['n_iter'] + 1
    assert frames[-1].startswith(f"EM iteration {fit['n_iter']:>4d} M") and 'change' in frames[-1] and 'KL gap' in frames[-1]
    assert 'converged: yes' in text


def test_printer_sees_the_rows_while_em_runs():
    "The printer is the fit's callback: every row reaches it before `fit` returns, and the rows are those of trace_."
    from klem_nb import cli
    from klem_nb.datasets import load_faithful
    est = cli.make_estimator('gmm', 2)
    rows, finished = [], []
    def printer(row):
        rows.append(row)
        finished.append(hasattr(est, 'trace_'))
    assert cli.fit_estimator(est, load_faithful().data, printer=printer) == []
    assert rows == est.trace_.records() and len(rows) == 2 * est.n_iter_
    assert not any(finished)


# ---- header rows ----------------------------------------------------------------------------------

NOTE = 'klem: first row is all numbers: read as data (use --header to treat it as column names)\n'


def test_file_without_header_keeps_its_first_row(files, tmp_path):
    "A first row of numbers is data: the fit sees all 200 rows, says so on stderr, and matches the file with a header."
    bare = run('fit', files['bare'], '--model', 'poisson', '--json', tmp_path/'bare.json')
    assert bare.returncode == 0 and bare.stderr == NOTE, bare.stderr
    named = run('fit', files['counts'], '--model', 'poisson', '--json', tmp_path/'named.json')
    assert named.returncode == 0 and named.stderr == '', named.stderr
    fit, ref = (json.loads((tmp_path/f'{n}.json').read_text()) for n in ('bare', 'named'))
    assert fit['data'] == dict(path=str(files['bare']), n_samples=200, n_features=2, columns=['x0', 'x1'])
    assert 'data row' not in bare.stdout and '200 samples, 2 features (x0, x1)' in bare.stdout
    assert 'rate x0' in bare.stdout
    assert fit['parameters'] == ref['parameters'] and fit['ledger'] == ref['ledger']


def test_header_flags(capsys, files, tmp_path):
    "--no-header says the same without the note; --header takes the first row as names, even when it is numbers."
    assert main(['fit', files['bare'], '--model', 'poisson', '--no-header', '--json', tmp_path/'no.json']) == 0
    assert capsys.readouterr().err == ''
    assert json.loads((tmp_path/'no.json').read_text())['data']['n_samples'] == 200
    first = np.loadtxt(files['bare'], delimiter=',', dtype=int)[0]
    assert main(['fit', files['bare'], '--model', 'poisson', '--header', '--json', tmp_path/'yes.json']) == 0
    out = capsys.readouterr()
    assert out.err == ''
    data = json.loads((tmp_path/'yes.json').read_text())['data']
    assert (data['n_samples'], data['columns']) == (199, [str(v) for v in first])
    assert main(['fit', files['counts'], '--model', 'poisson', '--header', '--json', tmp_path/'named.json']) == 0
    assert capsys.readouterr().err == ''
    assert json.loads((tmp_path/'named.json').read_text())['data']['columns'] == ['c1', 'c2']


# ---- the registry ---------------------------------------------------------------------------------

def test_a_new_model_is_one_registry_entry(capsys, monkeypatch, files, tmp_path):
    "Registering a model makes it a --model choice, with its own option, data, labels, report and figure."
    from klem_nb import cli
    from klem_nb.gmm import GaussianMixture
    reg = cli.Option('--reg-covar', 'reg_covar', 1e-6, 'added to the covariance diagonals', type=float)
    model = cli.Model('ridge', 'Ridge Gaussian', 'Gaussians with a regularised covariance',
                      'klem_nb.gmm:GaussianMixture', mean_label='centre {}', bundled=cli.MODELS['gmm'].bundled,
                      data_help='Old Faithful again', options=(reg,), parameters=('precisions',))
    monkeypatch.setitem(cli.MODELS, 'ridge', model)
    assert main(['fit', '--help']) == 0
    text = ' '.join(capsys.readouterr().out.split())          # argparse wraps the option help
    assert 'ridge: Gaussians with a regularised covariance' in text and '--reg-covar' in text
    assert 'ridge only: added to the covariance diagonals (default: 1e-06)' in text
    assert '--model ridge Old Faithful again' in text
    status = main(['fit', '--model', 'ridge', '--reg-covar', '0.5', '--json', tmp_path/'r.json',
                   '--plot', tmp_path/'r.png'])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert out.out.startswith('klem fit: Ridge Gaussian mixture, k=2, reg_covar=0.5; data bundled:faithful')
    assert 'centre eruptions' in out.out and 'covariance of component' not in out.out
    fit = json.loads((tmp_path/'r.json').read_text())
    assert (fit['model'], fit['reg_covar']) == ('ridge', 0.5)
    assert sorted(fit['parameters']) == ['means', 'precisions', 'weights']
    ref = GaussianMixture(2, reg_covar=0.5, random_state=0).fit(cli._faithful()[0])
    np.testing.assert_allclose(fit['parameters']['precisions'], ref.precisions_, rtol=1e-10)
    assert (tmp_path/'r.png').stat().st_size > 10_000
    # its option belongs to it alone, and the old models keep theirs
    assert main(['fit', '--model', 'gmm', '--reg-covar', '0.5']) == 2
    assert 'klem: error: --reg-covar applies to --model ridge only, not to --model gmm' in capsys.readouterr().err
    assert main(['fit', '--model', 'ridge', '--covariance-type', 'diag']) == 2
    assert '--covariance-type applies to --model gmm only' in capsys.readouterr().err


def test_registry_and_options():
    from klem_nb import cli
    assert list(cli.MODELS) == ['gmm', 'bernoulli', 'poisson', 'hmm-gaussian', 'hmm-poisson'] and cli.DEFAULT_MODEL == 'gmm'
    assert cli.make_estimator('gmm', 2, covariance_type='tied').covariance_type == 'tied'
    assert cli.make_estimator('gmm', 2).covariance_type == 'full'
    with pytest.raises(cli.CommandError, match='--covariance-type applies to --model gmm only'):
        cli.make_estimator('poisson', 2, covariance_type='diag')
    with pytest.raises(TypeError):
        cli.make_estimator('gmm', 2, 'diag')      # the shared options are keyword-only
    with pytest.raises(TypeError, match='unknown options'):
        cli.make_estimator('gmm', 2, covariances='diag')

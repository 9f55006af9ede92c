"`klem fit` with the HMM models: sequences from a column, the bundled earthquake counts, and errors."
import json

import numpy as np
import pytest

from klem_nb.cli import main


def _csv(tmp_path, rows, name='runs.csv'):
    p = tmp_path / name
    p.write_text('ID,a,b\n' + ''.join(f"{i},{a},{b}\n" for i, a, b in rows))
    return p


def _runs(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for sid, n in ((7, 60), (3, 40), (9, 50)):
        z = (np.arange(n) // 10) % 2
        x = np.c_[z * 4.0, z * -3.0] + rng.normal(size=(n, 2))
        rows += [(sid, *r) for r in x]
    return rows


def test_hmm_gaussian_with_sequence_column(tmp_path, capsys):
    p = _csv(tmp_path, _runs())
    assert main(['fit', str(p), '--model', 'hmm-gaussian', '--sequence-column', 'ID', '--max-iter', '200', '--tol', '1e-6',
                 '--json', str(tmp_path / 'f.json')]) == 0
    out = capsys.readouterr().out
    assert out.startswith('klem fit: Gaussian HMM, k=2, covariance_type=diag; data ') and '150 rows in 3 sequences' in out
    fit = json.loads((tmp_path / 'f.json').read_text())
    assert fit['lengths'] == [60, 40, 50] and fit['data']['columns'] == ['a', 'b']
    means = np.array(fit['parameters']['means'])
    np.testing.assert_allclose(np.sort(means[:, 0]), [0, 4], atol=0.5)
    F = [r['free_energy'] for r in fit['ledger']]
    assert all(b <= a + 1e-9 * abs(a) for a, b in zip(F, F[1:]))


def test_sequence_column_changes_the_fit(tmp_path, capsys):
    "The same rows as one sequence or three: different chains, different likelihoods."
    p = _csv(tmp_path, _runs())
    lls = []
    for extra in ([], ['--sequence-column', 'ID']):
        assert main(['fit', str(p), '--model', 'hmm-gaussian', '--json', str(tmp_path / 'g.json'), *extra]) == 0
        lls.append(json.loads((tmp_path / 'g.json').read_text())['log_likelihood'])
    capsys.readouterr()
    assert lls[0] != lls[1]


def test_hmm_poisson_bundled_earthquakes(capsys):
    "Zucchini & MacDonald's 2-state fit with the initial distribution estimated: -log L = 341.8787 (see 14_hmm)."
    assert main(['fit', '--model', 'hmm-poisson', '-k', '2', '--max-iter', '2000', '--tol', '1e-10']) == 0
    out = capsys.readouterr().out
    assert 'bundled:earthquakes: 107 rows in 1 sequence' in out
    assert 'log-likelihood: -341.8787' in out


@pytest.mark.parametrize('args, message', [
    (['--model', 'hmm-gaussian', '--sequence-column', 'XX'], "--sequence-column 'XX' is not a column"),
    (['--model', 'gmm', '--sequence-column', 'ID'], '--sequence-column applies to --model hmm-gaussian or hmm-poisson only'),
    (['--model', 'hmm-gaussian', '--plot', 'x.png'], '--plot is not available for --model hmm-gaussian'),
])
def test_errors(tmp_path, capsys, args, message):
    p = _csv(tmp_path, _runs())
    assert main(['fit', str(p), *args]) == 2
    assert message in capsys.readouterr().err


def test_split_sequence_is_an_error(tmp_path, capsys):
    rows = _runs()
    rows = rows[:30] + rows[60:100] + rows[30:60] + rows[100:]     # sequence 7 in two runs
    p = _csv(tmp_path, rows)
    assert main(['fit', str(p), '--model', 'hmm-gaussian', '--sequence-column', 'ID']) == 2
    assert 'must be together' in capsys.readouterr().err


def test_hmm_poisson_needs_counts(tmp_path, capsys):
    p = _csv(tmp_path, [(1, 1, 2), (1, 0.5, 3)])
    assert main(['fit', str(p), '--model', 'hmm-poisson', '--sequence-column', 'ID']) == 2
    assert 'needs counts' in capsys.readouterr().err

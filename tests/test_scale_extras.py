"""Scale-out with the wider Dask ecosystem: partial_fit inside dask-ml's Incremental, and `klem fit` on a directory
of CSV chunks (dask.dataframe). Both need optional packages (the dev extra installs them); skipped without them."""
import numpy as np
import pytest

from klem_nb.cli import main


def test_partial_fit_inside_dask_ml_incremental():
    da = pytest.importorskip('dask.array')
    wrappers = pytest.importorskip('dask_ml.wrappers')
    from klem_nb import PoissonMixture
    rng = np.random.default_rng(0)
    X = rng.poisson(rng.choice([2.0, 9.0], size=20_000)[:, None] * np.ones(3)).astype(float)
    inc = wrappers.Incremental(PoissonMixture(2, random_state=0), shuffle_blocks=False).fit(da.from_array(X, chunks=(1_000, 3)))
    est = inc.estimator_
    assert est.n_batch_iter_ == 20                           # one partial_fit per chunk, in order (no shuffling)
    by_hand = PoissonMixture(2, random_state=0)
    for a in range(0, len(X), 1_000): by_hand.partial_fit(X[a:a + 1_000])
    np.testing.assert_allclose(est.means_, by_hand.means_, rtol=1e-12)
    np.testing.assert_allclose(np.sort(est.means_[:, 0]), [2.0, 9.0], rtol=0.02)


def test_klem_fit_on_a_directory_of_csv_chunks(tmp_path, capsys):
    pytest.importorskip('dask.dataframe')
    rng = np.random.default_rng(1)
    parts = [np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(5, 1, (200, 2))]) for _ in range(3)]
    (tmp_path/'chunks').mkdir()
    for i, X in enumerate(parts):
        np.savetxt(tmp_path/'chunks'/f'part{i}.csv', X, delimiter=',', header='a,b', comments='')
    np.savetxt(tmp_path/'all.csv', np.vstack(parts), delimiter=',', header='a,b', comments='')
    args = ['-k', '2', '--seed', '0', '--json']
    assert main(['fit', str(tmp_path/'chunks')] + args + [str(tmp_path/'chunks.json')]) == 0
    assert main(['fit', str(tmp_path/'all.csv')] + args + [str(tmp_path/'all.json')]) == 0
    import json
    a, b = (json.loads((tmp_path/f).read_text()) for f in ('chunks.json', 'all.json'))
    np.testing.assert_allclose(a['lower_bound'], b['lower_bound'], rtol=1e-10)

"""Tests for klem_nb.datasets: the bundled loaders and load_csv's error messages (nbs/08_datasets.ipynb has the tour)."""
import csv
import subprocess
import sys

import numpy as np
import pytest

from klem_nb.datasets import load_csv, load_deaths, load_faithful


def test_faithful():
    b = load_faithful()
    assert b.data.shape == (272, 2) and b.data.dtype == np.float64
    assert b.feature_names == ['eruptions', 'waiting']
    assert np.isfinite(b.data).all()
    np.testing.assert_array_equal(b.data[0], [3.6, 79.0])
    assert 'Azzalini' in b.DESCR and 'Rdatasets' in b.DESCR
    assert b.data is not load_faithful().data  # a fresh array per call: callers may modify it


def test_deaths():
    b = load_deaths()
    np.testing.assert_array_equal(b.counts, np.arange(10))
    np.testing.assert_array_equal(b.days, [162, 267, 271, 185, 111, 61, 27, 8, 3, 1])
    assert b.counts.dtype.kind == 'i' and b.days.dtype.kind == 'i'
    assert b.days.sum() == 1096 and (b.counts * b.days).sum() == 2364
    assert b.data.shape == (10, 1) and b.data.dtype == np.float64
    np.testing.assert_array_equal(b.data[:, 0], b.counts)
    assert b.expanded.shape == (1096, 1)
    np.testing.assert_array_equal(np.bincount(b.expanded[:, 0].astype(int)), b.days)
    assert 'Hasselblad' in b.DESCR


def test_weighted_equals_expanded_statistics():
    b = load_deaths()
    mean = np.average(b.data[:, 0], weights=b.days)
    var = np.average((b.data[:, 0] - mean) ** 2, weights=b.days)
    np.testing.assert_allclose([mean, var], [b.expanded.mean(), b.expanded.var()], rtol=1e-12)


def test_loaders_work_without_the_source_tree(tmp_path):
    "importlib.resources finds the data relative to the package, whatever the working directory."
    code = "from klem_nb.datasets import *; assert load_faithful().data.shape == (272, 2); assert load_deaths().days.sum() == 1096"
    subprocess.run([sys.executable, '-c', code], cwd=tmp_path, check=True)


def _write(tmp_path, text, name='data.csv'):
    p = tmp_path / name
    p.write_text(text, encoding='utf-8')
    return p


def test_load_csv_roundtrip(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 3))
    p = tmp_path / 'x.csv'
    with open(p, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['a', 'b', 'c'])
        w.writerows(X.tolist())
    data, cols = load_csv(p)
    assert cols == ['a', 'b', 'c']
    assert data.dtype == np.float64
    np.testing.assert_array_equal(data, X)  # repr of a float round-trips exactly
    data, cols = load_csv(str(p))
    assert data.shape == (50, 3)


def test_load_csv_tolerates(tmp_path):
    data, cols = load_csv(_write(tmp_path, '\ufeff x , y \n1, 2\n\n\n3,4e0\r\n'))
    assert cols == ['x', 'y']
    np.testing.assert_array_equal(data, [[1, 2], [3, 4]])
    data, cols = load_csv(_write(tmp_path, 'x\n1\n2\n'))
    assert data.shape == (2, 1)
    data, _ = load_csv(_write(tmp_path, 'x\ty\n1\t2\n'), delimiter='\t')
    np.testing.assert_array_equal(data, [[1, 2]])


@pytest.mark.parametrize('text, message', [
    ('', 'is empty'),
    ('1,2\n3\n', 'line 2 (data row 2): ragged rows: this row has 1 cells but the first row has 2'),
    ('\n  \n', 'is empty'),
    ('x,y\n', 'is empty: it has a header row (x, y) but no data rows'),
    ('x,y\n1,2\n3\n', 'line 3 (data row 2): ragged rows: this row has 1 cells but the header has 2'),
    ('x,y\n1,2,3\n', 'line 2 (data row 1): ragged rows'),
    ('x,y\n1,2\n\n3,abc\n', "line 4 (data row 2), column 2 ('y'): non-numeric cell 'abc'"),
    ('x,y\n,2\n', "column 1 ('x'): non-numeric cell ''"),
    ('x,y\n1,inf\n', "column 2 ('y'): non-finite cell 'inf'"),
    ('x,y\nnan,1\n', 'non-finite'),
])
def test_load_csv_errors(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(ValueError, match='data.csv') as e:
        load_csv(p)
    assert message in str(e.value)


@pytest.mark.parametrize('text, header, data, columns', [
    # detection: a first row of numbers is data, and is kept
    ('1,2\n3,4\n', None, [[1, 2], [3, 4]], ['x0', 'x1']),
    (' 1 , -2.5e0 \n3,4\n', None, [[1, -2.5], [3, 4]], ['x0', 'x1']),
    ('\ufeff\n\n7\n8\n', None, [[7], [8]], ['x0']),
    ('5,6\n', None, [[5, 6]], ['x0', 'x1']),
    # detection: one non-number in the first row makes it a header
    ('x,y\n1,2\n', None, [[1, 2]], ['x', 'y']),
    ('a,2\n1,2\n', None, [[1, 2]], ['a', '2']),
    # forced
    ('1,2\n3,4\n', True, [[3, 4]], ['1', '2']),
    ('1,2\n3,4\n', False, [[1, 2], [3, 4]], ['x0', 'x1']),
    ('x,y\n1,2\n', True, [[1, 2]], ['x', 'y']),
])
def test_load_csv_header(tmp_path, text, header, data, columns):
    X, cols = load_csv(_write(tmp_path, text), header=header)
    np.testing.assert_array_equal(X, data)
    assert X.dtype == np.float64 and cols == columns


def test_load_csv_header_errors(tmp_path):
    with pytest.raises(ValueError, match=r"line 1 \(data row 1\), column 1 \('x0'\): non-numeric cell 'x'"):
        load_csv(_write(tmp_path, 'x,y\n1,2\n'), header=False)
    with pytest.raises(ValueError, match=r'header row \(1, 2\) but no data rows'):
        load_csv(_write(tmp_path, '1,2\n'), header=True)
    with pytest.raises(ValueError, match='line 2 .*non-finite'):
        load_csv(_write(tmp_path, '1,2\n3,inf\n'))   # inf parses as a number: the first row is data


def test_load_csv_missing_and_unreadable(tmp_path):
    with pytest.raises(ValueError, match='nope.csv not found'):
        load_csv(tmp_path / 'nope.csv')
    with pytest.raises(ValueError, match='is a directory'):
        load_csv(tmp_path)
    p = tmp_path / 'latin1.csv'
    p.write_bytes('x\n\xe9\n'.encode('latin-1'))
    with pytest.raises(ValueError, match='cannot read .*latin1.csv'):
        load_csv(p)

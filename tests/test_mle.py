"""Tests for eq. (0) and the (KL) definition, checked by klem_nb.checks (the page 01_mle exports no module)."""
import pytest

from klem_nb.checks import source_lines


@pytest.mark.parametrize('seed', range(6))
def test_source_lines(seed):
    rows = source_lines('KL', seed) + source_lines('(0)', seed)
    assert [(r['block'], r['line']) for r in rows] == [('KL', 1)] + [('(0)', i) for i in range(1, 6)]
    assert all(r['discrepancy'] < r['tol'] for r in rows), rows


@pytest.mark.parametrize('line', range(1, 6))
def test_each_line_can_fail(line):
    "Fed its wrong input (klem_nb.checks.MUTATIONS), each line of (0) exceeds its tolerance; so does (KL)."
    row = source_lines('(0)', 5, mutate=f'(0.{line})')[line - 1]
    assert row['discrepancy'] > row['tol'], row
    kl = source_lines('KL', line, mutate='(KL)')[0]
    assert kl['discrepancy'] > kl['tol'], kl


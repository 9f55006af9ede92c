"""Tests for klem_nb.mle: the source lines of eq. (0) and the Markdown tables every notebook shows."""
import numpy as np
import pytest

from klem_nb.mle import markdown_table, source_line_tag, source_lines, source_lines_table


def test_markdown_table_cells():
    table = markdown_table(['name', 'value'], [('a|b', 0.000123456), ('two\nlines', np.float64(2.0)), (3, 'x')])
    assert table.splitlines() == ['| name | value |', '|---|---|', '| a\\|b | 0.0001235 |', '| two lines | 2 |',
                                  '| 3 | x |']
    assert markdown_table(['a'], []) == '| a |\n|---|'
    with pytest.raises(ValueError, match=r'rows\[1\] has 3 cells'):
        markdown_table(['a', 'b'], [(1, 2), (1, 2, 3)])


def test_source_lines_table_has_one_row_per_line_and_the_site_tags():
    rows = source_lines(0)
    lines = source_lines_table(rows).splitlines()
    assert len(lines) == 2 + len(rows) == 8
    assert [line.split(' | ')[0] for line in lines[2:]] == ['| (KL)'] + [f'| (0.{i})' for i in range(1, 6)]
    assert [source_line_tag(b, l) for b, l in [('(1)', 7), ('E-step', 4), ('M-step', 4), ('other', 1)]] == \
        ['(1.7)', '(2.4)', '(M.4)', '']


@pytest.mark.parametrize('seed', range(6))
def test_source_lines(seed):
    rows = source_lines(seed)
    assert [(r['block'], r['line']) for r in rows] == [('KL', 1)] + [('(0)', i) for i in range(1, 6)]
    assert all(r['discrepancy'] < r['tol'] for r in rows), rows

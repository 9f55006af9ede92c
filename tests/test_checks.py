"""Tests for klem_nb.checks: every source line holds on random instances, and fails when fed its wrong input."""
import subprocess
import sys

import numpy as np
import pytest

from klem_nb.checks import (MUTATIONS, TAGS, markdown_table, mutated_lines, source_line_tag, source_lines,
                            source_lines_table)

BLOCK_OF = {tag: block for block, n in [('KL', 1), ('(0)', 5), ('(1)', 7), ('E-step', 5), ('M-step', 4)]
            for tag in [source_line_tag(block, l) for l in range(1, n + 1)]}


def tag_of(row): return source_line_tag(row['block'], row['line'])


def test_tags_and_mutations_cover_the_22_lines():
    assert len(TAGS) == 22 and len(set(TAGS)) == 22
    assert TAGS[:6] == ('(KL)', '(0.1)', '(0.2)', '(0.3)', '(0.4)', '(0.5)')
    assert TAGS[6:13] == tuple(f'(1.{i})' for i in range(1, 8))
    assert TAGS[13:] == tuple(f'(2.{i})' for i in range(1, 6)) + tuple(f'(M.{i})' for i in range(1, 5))
    assert set(MUTATIONS) == set(TAGS)


@pytest.mark.parametrize('seed', [0, 1, 2, 7])
def test_all_lines_hold(seed):
    rows = source_lines(seed=seed)
    assert [tag_of(r) for r in rows] == list(TAGS)
    for r in rows:
        assert set(r) == {'block', 'line', 'statement', 'check', 'discrepancy', 'tol'}
        assert r['discrepancy'] < r['tol'], (seed, r)


@pytest.mark.parametrize('tag', TAGS)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_each_line_fails_when_mutated_and_only_that_line(tag, seed):
    rows = source_lines(BLOCK_OF[tag], seed=seed, mutate=tag)
    for r in rows:
        if tag_of(r) == tag: assert r['discrepancy'] > r['tol'], (seed, r)
        else: assert r['discrepancy'] < r['tol'], (tag, seed, r)


def test_mutated_lines_all_fail():
    rows = mutated_lines(seed=3)
    assert [tag_of(r) for r in rows] == list(TAGS)
    assert all(r['discrepancy'] > r['tol'] for r in rows), [r for r in rows if not r['discrepancy'] > r['tol']]
    assert [r['mutation'] for r in rows] == [MUTATIONS[t] for t in TAGS]


def test_blocks_do_not_depend_on_each_other():
    "A block's numbers are the same whether it runs alone or with the others."
    everything = source_lines(seed=4)
    alone = [r for b in ('KL', '(0)', '(1)', 'E-step', 'M-step') for r in source_lines(b, seed=4)]
    assert everything == alone


def test_tag_spellings_and_bad_arguments():
    a = source_lines('E-step', mutate='2.4')
    b = source_lines('E-step', mutate='(2.4)')
    assert a == b
    assert source_lines('KL', mutate='KL')[0]['discrepancy'] > 1e-12
    with pytest.raises(ValueError, match='mutate must be one of'): source_lines(mutate='(3.1)')
    with pytest.raises(ValueError, match='is not a line of block'): source_lines('(0)', mutate='(2.1)')
    with pytest.raises(ValueError, match='block must be one of'): source_lines('E step')


def test_markdown_tables():
    table = markdown_table(['name', 'value'], [('a|b', 0.000123456), ('two\nlines', np.float64(2.0)), (3, 'x')])
    assert table.splitlines() == ['| name | value |', '|---|---|', '| a\\|b | 0.0001235 |', '| two lines | 2 |',
                                  '| 3 | x |']
    assert markdown_table(['a'], []) == '| a |\n|---|'
    with pytest.raises(ValueError, match=r'rows\[1\] has 3 cells'):
        markdown_table(['a', 'b'], [(1, 2), (1, 2, 3)])
    rows = source_lines('(1)')
    lines = source_lines_table(rows).splitlines()
    assert len(lines) == 2 + 7
    assert [line.split(' | ')[0] for line in lines[2:]] == [f'| (1.{i})' for i in range(1, 8)]
    assert [source_line_tag(b, l) for b, l in [('(1)', 7), ('E-step', 4), ('M-step', 4), ('other', 1)]] == \
        ['(1.7)', '(2.4)', '(M.4)', '']


@pytest.mark.parametrize('module', ['klem_nb.em', 'klem_nb.e_step', 'klem_nb.m_step', 'klem_nb.free_energy'])
def test_runtime_modules_import_neither_checks_nor_scipy_optimize(module):
    code = (f"import sys, {module}; "
            "print('klem_nb.checks' in sys.modules, 'scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == 'False', f'importing {module} imports klem_nb.checks'
    assert out[1] == 'False', f'importing {module} imports scipy.optimize'

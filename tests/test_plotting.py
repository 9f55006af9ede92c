"""Tests for klem_nb.plotting (nbs/09_plotting.ipynb has the pictures). Runs headless on the Agg backend."""
import os
import subprocess
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from klem_nb.em import LEDGER_DTYPE  # noqa: E402
from klem_nb.plotting import (LEDGER_FIELDS, plot_bernoulli_means, plot_gaussian_ellipses,  # noqa: E402
                              plot_ledger, plot_lower_bounds)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


def fake_ledger(n_iter=6, rate=0.5):
    "A ledger obeying EM's bookkeeping: F = gap - L on every row, zero gap after E, L rising geometrically."
    L = -1.0 - rate ** np.arange(n_iter + 1)        # L(θ_0), L(θ_1), ...
    rows = []
    for t in range(1, n_iter + 1):
        rows.append((t, 'E', L[t - 1], -L[t - 1], 0.0))
        gap = 0.3 * (L[t] - L[t - 1])
        rows.append((t, 'M', L[t], gap - L[t], gap))
    return np.array(rows, dtype=LEDGER_DTYPE)


def test_import_does_not_import_pyplot():
    code = "import klem_nb.plotting, sys; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, '-c', code], check=True)


def test_functions_work_in_a_fresh_interpreter():
    code = ("import numpy as np, sys\n"
            "from klem_nb.plotting import plot_lower_bounds\n"
            "ax = plot_lower_bounds([-3.0, -2.0, -1.5])\n"
            "assert 'matplotlib.pyplot' in sys.modules and len(ax.lines) == 1\n")
    subprocess.run([sys.executable, '-c', code], check=True, env={**os.environ, 'MPLBACKEND': 'Agg'})


# ---- plot_ledger ----------------------------------------------------------------------------------

def test_plot_ledger_new_figure():
    led = fake_ledger(6)
    fig = plot_ledger(led)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax0, ax1 = fig.axes
    assert len(ax0.lines) == 4                       # F path, -L, E markers, M markers
    assert len(ax0.collections[0].get_segments()) == 6  # one gap bar per M-step
    np.testing.assert_allclose(ax0.lines[0].get_xdata(), np.arange(1, 13) / 2)
    np.testing.assert_allclose(ax0.lines[0].get_ydata(), led['free_energy'])
    np.testing.assert_allclose(ax0.lines[1].get_ydata(), -led['log_likelihood'])
    assert ax1.get_yscale() == 'log'
    assert ax0.get_ylabel() and ax0.get_xlabel() and ax1.get_ylabel()
    m_line = [l for l in ax1.lines if l.get_label() == 'after M'][0]
    np.testing.assert_allclose(m_line.get_ydata(), led['kl_gap'][led['step'] == 'M'])
    zero_line = [l for l in ax1.lines if 'approx 0' in l.get_label()][0]
    assert len(zero_line.get_xdata()) == 6


def test_plot_ledger_given_axes_and_recarray():
    fig, axes = plt.subplots(2, 1)
    assert plot_ledger(fake_ledger(3).view(np.recarray), axes=axes) is fig
    fig2, (a, b) = plt.subplots(1, 2)
    assert plot_ledger(fake_ledger(3), axes=[a, b]) is fig2


def test_plot_ledger_all_zero_gaps_stays_linear():
    led = fake_ledger(3)
    led['kl_gap'] = 0.0
    fig = plot_ledger(led)
    assert fig.axes[1].get_yscale() == 'linear'


def test_plot_ledger_rejects_bad_input():
    with pytest.raises(ValueError, match='missing'):
        plot_ledger(np.zeros(4))
    with pytest.raises(ValueError, match='missing'):
        plot_ledger([1, 2, 3])
    with pytest.raises(ValueError, match='empty'):
        plot_ledger(fake_ledger(2)[:0])
    bad = fake_ledger(2)
    bad['step'][0] = 'X'
    with pytest.raises(ValueError, match="'E' or 'M'"):
        plot_ledger(bad)
    fig, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match='2 Axes'):
        plot_ledger(fake_ledger(2), axes=axes)
    assert LEDGER_FIELDS == LEDGER_DTYPE.names


# ---- plot_gaussian_ellipses -----------------------------------------------------------------------

MEANS = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
COVS = {
    'full': np.array([[[2.0, 0.8], [0.8, 1.0]], [[1.0, -0.3], [-0.3, 0.5]], np.eye(2)]),
    'tied': np.array([[2.0, 0.8], [0.8, 1.0]]),
    'diag': np.array([[2.0, 1.0], [0.5, 3.0], [1.0, 1.0]]),
    'spherical': np.array([1.0, 0.5, 2.0]),
}


def _outline(patch):
    return patch.get_patch_transform().transform_path(patch.get_path())


@pytest.mark.parametrize('ctype', list(COVS))
def test_ellipses_every_covariance_type(ctype):
    ax = plot_gaussian_ellipses(MEANS, COVS[ctype], ctype)
    assert isinstance(ax, Axes)
    assert len(ax.patches) == 3 * 2 and len(ax.lines) == 1
    xlo, xhi = ax.get_xlim()
    assert xlo < -2 and xhi > 3                      # autoscaled to the patches
    ax = plot_gaussian_ellipses(MEANS, COVS[ctype], ctype, n_std=1.5)
    assert len(ax.patches) == 3


@pytest.mark.parametrize('ctype', list(COVS))
def test_ellipses_hold_the_right_probability(ctype):
    "Each ellipse at radius s holds 1 - exp(-s^2/2) of its Gaussian's mass: checks axes and angle together."
    rng = np.random.default_rng(1)
    full = {'full': COVS['full'], 'tied': np.array([COVS['tied']] * 3),
            'diag': np.array([np.diag(v) for v in COVS['diag']]),
            'spherical': np.array([v * np.eye(2) for v in COVS['spherical']])}[ctype]
    ax = plot_gaussian_ellipses(MEANS, COVS[ctype], ctype, n_std=(1, 2))
    for j in range(3):
        sample = rng.multivariate_normal(MEANS[j], full[j], size=4000)
        for i, s in enumerate((1, 2)):
            frac = _outline(ax.patches[2 * j + i]).contains_points(sample).mean()
            assert abs(frac - (1 - np.exp(-s ** 2 / 2))) < 0.03


def test_ellipses_the_four_types_agree():
    outlines = {}
    forms = {'full': np.array([2 * np.eye(2)] * 3), 'tied': 2 * np.eye(2), 'diag': np.full((3, 2), 2.0),
             'spherical': np.full(3, 2.0)}
    for ctype, c in forms.items():
        outlines[ctype] = [_outline(p).vertices for p in plot_gaussian_ellipses(MEANS, c, ctype).patches]
    for ctype in forms:
        np.testing.assert_allclose(outlines[ctype], outlines['full'], atol=1e-12)


def test_ellipses_kwargs_and_given_ax():
    fig, ax = plt.subplots()
    assert plot_gaussian_ellipses(MEANS[:1], COVS['full'][:1], ax=ax, color='red', ls='--') is ax
    assert all(p.get_edgecolor()[:3] == (1.0, 0.0, 0.0) and p.get_linestyle() == '--' for p in ax.patches)
    assert all(p.get_facecolor()[3] == 0 for p in ax.patches)


def test_ellipses_refuse_other_dimensions_and_bad_input():
    n_figs = len(plt.get_fignums())
    with pytest.raises(ValueError, match='d=3'):
        plot_gaussian_ellipses(np.zeros((2, 3)), np.array([np.eye(3)] * 2))
    with pytest.raises(ValueError, match='d=1'):
        plot_gaussian_ellipses(np.zeros((2, 1)), np.ones(2), 'spherical')
    with pytest.raises(ValueError, match=r'must have shape \(3, 2, 2\)'):
        plot_gaussian_ellipses(MEANS, COVS['tied'], 'full')
    with pytest.raises(ValueError, match=r"'tied' .* must have shape \(2, 2\)"):
        plot_gaussian_ellipses(MEANS, COVS['full'], 'tied')
    with pytest.raises(ValueError, match='covariance_type must be one of'):
        plot_gaussian_ellipses(MEANS, COVS['full'], 'banded')
    with pytest.raises(ValueError, match='component 1 is not symmetric positive semi-definite'):
        plot_gaussian_ellipses(MEANS[:2], [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match='component 0 is not symmetric'):
        plot_gaussian_ellipses(MEANS[:1], [[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match='n_std'):
        plot_gaussian_ellipses(MEANS, COVS['spherical'], 'spherical', n_std=(1, -1))
    with pytest.raises(ValueError, match='NaN or inf'):
        plot_gaussian_ellipses(MEANS, COVS['spherical'] * np.nan, 'spherical')
    assert len(plt.get_fignums()) == n_figs           # no stray figures from rejected input


def test_ellipses_singular_covariance_is_a_segment():
    ax = plot_gaussian_ellipses([[0.0, 0.0]], [[[1.0, 1.0], [1.0, 1.0]]], n_std=1)
    e = ax.patches[0]
    np.testing.assert_allclose([e.width, e.height, e.angle % 180], [2 * np.sqrt(2), 0, 45], atol=1e-7)


# ---- plot_lower_bounds ----------------------------------------------------------------------------

def test_lower_bounds_log_gap_is_a_straight_line_for_linear_convergence():
    rate = 0.6
    lb = -1 - rate ** np.arange(30)
    ax = plot_lower_bounds(lb)
    assert isinstance(ax, Axes) and ax.get_yscale() == 'log'
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert len(x) == 29 and x[0] == 1
    np.testing.assert_allclose(y, np.abs(lb[-1] - lb[:-1]))
    slope = np.polyfit(x[:15], np.log(y[:15]), 1)[0]
    np.testing.assert_allclose(slope, np.log(rate), rtol=1e-3)
    assert 'final' in ax.get_ylabel() and ax.get_xlabel() == 'iteration'


def test_lower_bounds_plain_and_kwargs():
    fig, ax = plt.subplots()
    lb = [-3.0, -2.0, -1.5, -1.4]
    assert plot_lower_bounds(lb, ax=ax, log_gap=False, label='run 1', color='C3') is ax
    assert ax.get_yscale() == 'linear'
    np.testing.assert_allclose(ax.lines[0].get_ydata(), lb)
    assert ax.lines[0].get_label() == 'run 1'


def test_lower_bounds_degenerate():
    ax = plot_lower_bounds([-1.0])                  # one iteration: nothing to measure against
    assert len(ax.lines[0].get_xdata()) == 0 and ax.get_yscale() == 'linear'
    ax = plot_lower_bounds([-1.0, -1.0, -1.0])
    assert ax.get_yscale() == 'linear'
    for bad, msg in [([], 'non-empty 1-D'), ([[1.0, 2.0]], 'non-empty 1-D'), ([1.0, np.inf], 'NaN or inf')]:
        with pytest.raises(ValueError, match=msg):
            plot_lower_bounds(bad)


# ---- plot_bernoulli_means -------------------------------------------------------------------------

def test_bernoulli_means_mosaic():
    rng = np.random.default_rng(0)
    means = rng.uniform(size=(7, 12))
    ax = plot_bernoulli_means(means, (3, 4), ncols=3)
    assert isinstance(ax, Axes) and len(ax.images) == 1 and len(ax.texts) == 7
    img = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    band = 1                                         # round(0.3 * 3)
    assert img.shape == (3 * (3 + band), 3 * (4 + 1) - 1)
    for j in range(7):
        r, c = divmod(j, 3)
        top, left = r * (3 + band) + band, c * 5
        np.testing.assert_array_equal(img[top:top + 3, left:left + 4], means[j].reshape(3, 4))
    assert np.isnan(img).sum() == img.size - 7 * 12
    assert ax.images[0].get_clim() == (0, 1)
    assert [t.get_text() for t in ax.texts] == [str(j) for j in range(7)]


def test_bernoulli_means_weights_single_and_given_ax():
    fig, ax = plt.subplots()
    w = np.array([0.25, 0.75])
    assert plot_bernoulli_means(np.full((2, 64), 0.5), (8, 8), ax=ax, weights=w) is ax
    assert [t.get_text() for t in ax.texts] == ['0: 0.25', '1: 0.75']
    ax = plot_bernoulli_means(np.linspace(0, 1, 6), (2, 3))      # one component as a 1-D vector
    assert len(ax.texts) == 1


def test_bernoulli_means_rejects_bad_input():
    m = np.full((2, 6), 0.5)
    for kwargs, msg in [(dict(shape=(2, 2)), 'does not fit means with d=6'), (dict(shape=5), 'height, width'),
                        (dict(shape=(2, 3), weights=[1.0]), r'weights must have shape \(2,\)'),
                        (dict(shape=(2, 3), ncols=0), 'ncols')]:
        with pytest.raises(ValueError, match=msg):
            plot_bernoulli_means(m, **kwargs)
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        plot_bernoulli_means(m + 1, (2, 3))
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        plot_bernoulli_means(m * np.nan, (2, 3))

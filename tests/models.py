"""Test models for the EM engine: the binomial mixture of nbs/05_em.ipynb, with input and constructor checks."""
import numpy as np
from scipy.special import gammaln, xlog1py, xlogy

from klem_nb.em import LatentClassModel
from klem_nb.m_step import mixture_weights


class BinomialMixtureModel(LatentClassModel):
    "A mixture of k products of d independent binomials (two coins: k=2, d=1), as a `LatentClassModel`."
    def __init__(self,
        success, # success probabilities θ in [0, 1], shape (k,) for one count per row, or (k, d)
        n_trials=1, # trials behind each count: a positive integer, or shape (d,)
        weights=None, # mixture weights π, shape (k,), positive, summing to 1; uniform if None
        fixed_weights=False, # keep `weights` as given instead of re-estimating them in the M-step
    ):
        success = np.array(success, dtype=float)
        if success.ndim not in (1, 2) or success.shape[0] < 1:
            raise ValueError(f"success must have shape (k,) or (k, d), got {success.shape}")
        if not (np.isfinite(success).all() and (success >= 0).all() and (success <= 1).all()):
            raise ValueError("success must hold probabilities in [0, 1]")
        k, d = success.shape[0], (1 if success.ndim == 1 else success.shape[1])
        n_trials = np.array(n_trials, dtype=float)
        if (n_trials.ndim > 1 or n_trials.size not in (1, d)
                or not ((n_trials >= 1).all() and (n_trials == np.round(n_trials)).all())):
            raise ValueError(f"n_trials must be a positive integer or {d} of them, got {n_trials!r}")
        weights = np.full(k, 1 / k) if weights is None else np.array(weights, dtype=float)
        if weights.shape != (k,) or not (weights > 0).all() or abs(weights.sum() - 1) > 1e-8:
            raise ValueError(f"weights must be {k} positive numbers summing to 1, got {weights!r}")
        self.success, self.weights, self.fixed_weights = success, weights, fixed_weights
        self.n_trials = np.broadcast_to(n_trials, (d,)).copy()

    def check_X(self, X):
        "Validate counts once, before `em`: float array (n, d) of integers in [0, n_trials]."
        X = np.asarray(X, dtype=float)
        X = X.reshape(len(X), -1) if X.ndim == 1 else X
        d = len(self.n_trials)
        if X.ndim != 2 or X.shape[1] != d: raise ValueError(f"X must have shape (n, {d}), got {X.shape}")
        if not (np.isfinite(X).all() and (X == np.round(X)).all() and (X >= 0).all() and (X <= self.n_trials).all()):
            raise ValueError(f"X must hold integer counts between 0 and n_trials={self.n_trials.tolist()}")
        return X

    def _theta(self): return self.success.reshape(len(self.success), -1)

    @staticmethod
    def _rows(X): return np.asarray(X, dtype=float).reshape(len(X), -1)

    def _log_binom(self, X):
        m = self.n_trials
        return (gammaln(m + 1) - gammaln(X + 1) - gammaln(m - X + 1)).sum(axis=1)

    def log_joint(self, X):
        "log π_j + Σ_l log Binomial(x_il; m_l, θ_jl), shape (n, k)."
        X, theta = self._rows(X), self._theta()
        with np.errstate(divide='ignore'): log_pi = np.log(self.weights)
        per_class = (xlogy(X[:, None, :], theta) + xlog1py((self.n_trials - X)[:, None, :], -theta)).sum(axis=2)
        return log_pi + self._log_binom(X)[:, None] + per_class

    def sufficient_stats(self, X, wresp):
        "N (k,), S (k, d), T (k, d) and the base term B."
        X = self._rows(X)
        return dict(nk=wresp.sum(axis=0), successes=wresp.T @ X, failures=wresp.T @ (self.n_trials - X),
                    base=wresp.sum(axis=1) @ self._log_binom(X))

    def m_step(self, stats):
        "θ_jl = S_jl / (S_jl + T_jl); π_j = N_j / Σ N unless the weights are fixed."
        S, T = stats['successes'], stats['failures']
        self.success = (S / np.maximum(S + T, np.finfo(float).tiny)).reshape(self.success.shape)
        if not self.fixed_weights: self.weights = mixture_weights(stats['nk'][None, :])

    def expected_log_joint(self, stats):
        "Σ_j N_j log π_j + Σ_jl [S log θ + T log(1 - θ)] + B, from the statistics."
        theta = self._theta()
        return float(xlogy(stats['nk'], self.weights).sum() + xlogy(stats['successes'], theta).sum()
                     + xlog1py(stats['failures'], -theta).sum() + stats['base'])

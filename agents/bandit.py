"""A contextual bandit that learns online, decision by decision: factorised linear Thompson sampling.

Model
-----
Each value of each action dimension (7 channels including wait, 4 windows, 4 tones, 4 offers: 19
arms) has a Bayesian linear model of the reward on the 58 observation features (ridge prior
``lambda_``, noise ``sigma``). A contact ``(c, w, t, o)`` is scored as the sum of its four arms'
predictions and waiting as the wait arm alone, so the best contact is found dimension by
dimension among the allowed values and then compared with waiting. Once a day one parameter
vector per arm is drawn from its posterior (Thompson sampling), which keeps exploring where the
model is unsure.

Reward
------
A decision's reward is the debtor's net value over the ``window_days`` days that follow it, as a
share of the debtor's balance (arms are compared within one debtor, so this ranks them exactly as
EUR would, with far less variance); the update happens when that window closes. A wait is
credited with what happens anyway, so a contact arm learns its value *beyond* waiting.

It needs no training run: it starts from the prior and learns on the stream of debtors it acts
on (``collectrl bandit`` shows its cumulative regret against the oracle on that stream).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from policies.features import N_FEATURES, encode
from policies.schema import ACTION_DIMS, ViewBatch
from sim.world import DayResult, World

_OFFSETS = np.cumsum((0, *ACTION_DIMS[:-1]))
N_ARMS = int(sum(ACTION_DIMS))


class LinearThompsonBandit:
    """Factorised linear Thompson sampling over channel, window, tone and offer (see module docstring)."""

    policy_id = "linear_ts"
    version = 1

    def __init__(self, window_days: int = 14, lambda_: float = 1.0, sigma: float = 0.1, draws: int = 32) -> None:
        self.window_days = window_days
        self.draws = draws
        self.lambda_ = lambda_
        self.sigma = sigma
        self.reset(0)

    def reset(self, seed: int | None = None) -> None:
        self.rng_ = np.random.default_rng(seed)
        d = N_FEATURES + 1  # features + intercept
        self.A_ = np.tile(np.eye(d) * self.lambda_, (N_ARMS, 1, 1))
        self.b_ = np.zeros((N_ARMS, d))
        self.pending_: deque[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self.cum_: np.ndarray | None = None
        self.day_ = 0
        self.updates_ = 0

    # -- acting
    def _sample_theta(self, draws: int) -> np.ndarray:
        """(draws, 19, d) parameter vectors from each arm's posterior."""
        prec = self.A_
        cov = np.linalg.inv(prec)
        mean = np.einsum("kij,kj->ki", cov, self.b_)
        chol = np.linalg.cholesky(cov * self.sigma**2 + 1e-9 * np.eye(prec.shape[1]))
        z = self.rng_.standard_normal((draws, N_ARMS, prec.shape[1]))
        return mean[None] + np.einsum("kij,skj->ski", chol, z)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        raise TypeError("the bandit learns from the rewards it causes: run it through the simulator (sim.runner)")

    def act_with_world(self, world: World, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = world.n
        out = np.zeros((n, 4), dtype=np.int64)
        idx = np.flatnonzero(world.open)
        if len(idx) == 0:
            return out
        x = np.hstack([encode(views.take(idx)).astype(np.float64), np.ones((len(idx), 1))])
        # debtors are spread over several posterior draws, so the portfolio does not explore in lockstep
        theta = self._sample_theta(self.draws)
        group = self.rng_.integers(0, self.draws, len(idx))
        scores = np.einsum("md,mkd->mk", x, theta[group])  # (M, 19)
        m = mask[idx]
        scores = np.where(m, scores, -np.inf)
        best = [
            scores[:, s + (1 if k == 0 else 0) : s + n_].argmax(axis=1) + (1 if k == 0 else 0)
            for k, (s, n_) in enumerate(zip(_OFFSETS, ACTION_DIMS, strict=True))
        ]
        contact_value = sum(scores[np.arange(len(idx)), s + b] for s, b in zip(_OFFSETS, best, strict=True))
        contact = np.isfinite(contact_value) & (contact_value > scores[:, 0])
        a = np.zeros((len(idx), 4), dtype=np.int64)
        a[contact] = np.stack(best, axis=1)[contact]
        out[idx] = a
        self.pending_.append((self.day_, idx, x, a, np.zeros(0)))
        return out

    # -- learning
    def observe(self, world: World, result: DayResult) -> None:
        """Called by the runner after each day: accumulate rewards, update matured decisions."""
        if self.cum_ is None:
            self.cum_ = np.zeros(world.n)
        # the reward clock of a decision starts on its day
        if self.pending_:
            day, idx, x, a, start = self.pending_[-1]
            if day == self.day_ and len(start) == 0:
                self.pending_[-1] = (day, idx, x, a, self.cum_[idx].copy())
        self.cum_ += result.reward / np.maximum(world.balance, 1.0)
        self.day_ += 1
        while self.pending_ and self.pending_[0][0] <= self.day_ - self.window_days:
            _, idx, x, a, start = self.pending_.popleft()
            self._update(x, a, self.cum_[idx] - start)

    def _update(self, x: np.ndarray, a: np.ndarray, r: np.ndarray) -> None:
        contact = a[:, 0] > 0
        arms = [a[:, 0]] + [_OFFSETS[k] + a[:, k] for k in (1, 2, 3)]
        for k, arm in enumerate(arms):
            use = np.ones(len(a), dtype=bool) if k == 0 else contact
            if not use.any():
                continue
            for j in np.unique(arm[use]):
                sel = use & (arm == j)
                xs = x[sel]
                self.A_[j] += xs.T @ xs
                self.b_[j] += xs.T @ r[sel]
        self.updates_ += len(a)

"""Off-policy evaluation: what a challenger would have earned on the accounts a logged policy decided.

Two questions, two families of estimators, all read from a decision log (``experiments.decision_log``)
and its outcomes (the history format):

* **Per decision.** The reward of a decision is the money the account paid within ``reward_days``
  (14) days from the decision, net of the cost of the decision's contact. IPS reweights each logged
  reward by ``w = pi(a|x) / mu(a|x)``; self-normalised IPS divides by the sum of the weights; the
  direct method (DM) averages a reward model's prediction under the target; doubly robust (DR) is DM
  plus the weighted residuals; DR with shrinkage (Su et al. 2020) replaces ``w`` by
  ``lambda w / (w^2 + lambda)``, ``lambda`` chosen to minimise an estimate of bias^2 + variance. The
  reward model is a ridge regression on features linear in the action's one-hots (so its expectation
  under any target is exact and cheap), cross-fitted over two halves of the accounts.
  This is a contextual-bandit question: the target makes *this* decision, the logger the rest.
* **Per account.** The account's net cash over the whole log (payments minus contact costs).
  Weighted per-decision importance sampling (WPDIS) normalises the cumulative weights at each
  decision step; weighted doubly robust (WDR, Thomas & Brunskill 2016) adds fitted-Q control
  variates; fitted Q evaluation (FQE) iterates a ridge Q-function on ``r + V(next)``.

Every estimate has a bootstrap interval: the accounts are resampled (decisions of one account are
not independent), the same resamples for every target, so differences are paired. The reward model
and FQE are fitted once, not per resample (their uncertainty is not in the interval).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments import stats
from experiments.decision_log import Decisions, Dist, TargetPolicy, read_decisions
from experiments.errors import UsageError
from policies.features import FEATURE_NAMES, encode
from policies.fileio import atomic_write

REWARD_DAYS = 14
BOOTSTRAP = 200
DECISION_ESTIMATORS = ("ips", "snips", "dm", "dr", "dr_shrink")
ACCOUNT_ESTIMATORS = ("wpdis", "wdr", "fqe")
LABELS = {
    "ips": "IPS",
    "snips": "self-normalised IPS",
    "dm": "direct method",
    "dr": "doubly robust",
    "dr_shrink": "DR with shrinkage",
    "wpdis": "weighted per-decision IS",
    "wdr": "weighted doubly robust",
    "fqe": "fitted Q evaluation",
    "logged": "logged (on-policy)",
}
# features crossed with the contact channel in the reward model: what makes a channel pay for one debtor and not another
_CROSSED = (
    "log_balance",
    "outstanding_share",
    "dpd",
    "days_in_collections",
    "days_left",
    "behaviour_score",
    "contacts_total",
    "days_since_contact",
    "days_since_response",
    "promise_active",
    "plan_active",
    "app_user",
)
# money features: a debtor's value scales with what is still owed, which the (scale-free) policy features do not carry
MONEY_FEATURES = ("outstanding_k", "outstanding_k_x_days_left", "outstanding_k_x_score", "outstanding_k_x_promise", "outstanding_k_x_plan")
_NAMES = (*FEATURE_NAMES, *MONEY_FEATURES)
_CROSS_IDX = np.array([_NAMES.index(n) for n in (*_CROSSED, "outstanding_k", "outstanding_k_x_score")])


def money_features(v: Any) -> np.ndarray:
    o = v.outstanding_eur / 1000.0
    return np.stack([o, o * v.days_left / 365.0, o * v.behaviour_score, o * v.promise_active, o * v.plan_active], axis=1)  # type: ignore[no-any-return]


RIDGE = 1.0
FQE_MAX_ITER = 300
BENCH_TARGETS = ("static_ladder", "segment_journeys", "digital_first", "random", "no_contact")
# The bench's one-decision truth: the share of decisions the target makes in the probe run. Small, because
# a target's probe decisions must not shape the states and rewards of its later ones: the learner's truth
# under the 10 %-random ladder measured 216.1 / 193.3 / 187.9 EUR at shares of 10 / 2 / 0.5 % (+-2).
PROBE_SHARE = 0.005
TRUTH_DEBTORS = 200_000  # the probe run's debtors (at least): the truth's standard error is then ~2 EUR on default


# ------------------------------------------------------------------ the logged data


@dataclass
class Logged:
    """A decision log joined with its outcomes, sorted by account and day."""

    decisions: Decisions
    account: np.ndarray  # (N,) account index 0..A-1
    reward: np.ndarray  # (N,) per-decision reward (reward_days of cash net of the contact's cost)
    step_reward: np.ndarray  # (N,) cash net of costs from this decision to the account's next
    n_accounts: int
    x: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # (N, F) standardised features
    reward_days: int = REWARD_DAYS

    def __len__(self) -> int:
        return len(self.account)

    @property
    def next_row(self) -> np.ndarray:
        """Index of the account's next decision, -1 for its last."""
        nxt = np.arange(1, len(self) + 1)
        last = np.append(self.account[1:] != self.account[:-1], True)
        nxt[last] = -1
        return nxt

    @property
    def account_value(self) -> float:
        """Mean net cash per account over the log (the logging policy's own value)."""
        return float(self.step_reward.sum() / self.n_accounts)


def _window_sums(acc: np.ndarray, day: np.ndarray, amount: np.ndarray, q_acc: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per query, the sum of ``amount`` of account ``q_acc`` on days ``lo <= day < hi``."""
    span = np.int64(1 << 24)
    key = acc.astype(np.int64) * span + day.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    cs = np.concatenate([[0.0], np.cumsum(amount[order])])
    base = q_acc.astype(np.int64) * span
    return cs[np.searchsorted(key, base + np.minimum(hi, span - 1), "left")] - cs[np.searchsorted(key, base + lo, "left")]  # type: ignore[no-any-return]


def join(decisions: Decisions, history: Any, reward_days: int = REWARD_DAYS) -> Logged:
    """Join decisions with a history (``sim.history.History``): rewards per decision and per step."""
    ids = history.accounts["account_id"]
    index = {str(v): i for i, v in enumerate(ids.tolist())}
    acc = np.array([index.get(a, -1) for a in decisions.account_id.tolist()], dtype=np.int64)
    if (acc < 0).any():
        missing = sorted(set(decisions.account_id[acc < 0].tolist()))[:5]
        raise UsageError(f"decisions of accounts {missing} that are not in the history's accounts table")
    order = np.lexsort((decisions.day, acc))
    d = decisions.take(order)
    acc = acc[order]
    # accounts renumbered to those with decisions
    used, acc = np.unique(acc, return_inverse=True)
    remap = np.full(len(ids), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    pay, con = history.payments, history.contacts
    p_acc, c_acc = remap[pay["account"]], remap[con["account"]]
    pk, ck = p_acc >= 0, c_acc >= 0
    cost = con["cost_eur"] if "cost_eur" in con else np.zeros(len(c_acc))
    cost = np.nan_to_num(cost.astype(np.float64))
    pays = (p_acc[pk], pay["day"][pk], pay["amount_eur"][pk].astype(np.float64))
    costs = (c_acc[ck], con["day"][ck], cost[ck])
    day = d.day
    same = _window_sums(*costs, acc, day, day + 1)
    reward = _window_sums(*pays, acc, day, day + reward_days) - same
    nxt_day = np.append(day[1:], 0)
    last = np.append(acc[1:] != acc[:-1], True)
    upto = np.where(last, np.int64(1 << 24), nxt_day)
    step = _window_sums(*pays, acc, day, upto) - _window_sums(*costs, acc, day, upto)
    x = np.hstack([encode(d.views).astype(np.float64), money_features(d.views)])
    return Logged(d, acc, reward, step, len(used), x, reward_days)


def load_logs(folder: str | Path, reward_days: int = REWARD_DAYS, profile: str = "us_reg_f") -> Logged:
    from sim.history import HistoryError, read_history

    decisions = read_decisions(folder, profile)
    try:
        history = read_history(folder)
    except HistoryError as e:
        raise UsageError(f"{folder}: the outcomes (history format) are not usable:\n{e}") from None
    return join(decisions, history, reward_days)


# ------------------------------------------------------------------ the reward model


class Features:
    """phi(x, a) = [1, x, one-hots of the action, contact channel x crossed features], standardised x.
    Linear in the action's one-hots, so E_pi[phi(x, a)] needs only the policy's expected one-hots."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.x = (x - self.mean_) / self.scale_
        self.xs = self.x[:, _CROSS_IDX]
        self.nf, self.nc = self.x.shape[1], len(_CROSS_IDX)
        self.dim = 1 + self.nf + 19 + 6 * self.nc

    def matrix(self, onehots: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        x, xs = self.x[rows], self.xs[rows]
        cross = (onehots[:, 1:7, None] * xs[:, None, :]).reshape(len(x), -1)
        return np.hstack([np.ones((len(x), 1)), x, onehots, cross])

    def sums(self, onehots: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum over all rows of weights * phi(x, a) (a given by its (expected) one-hots), without
        building phi (a weight of 0 leaves a row out, without copying the others)."""
        w = weights
        cross = np.einsum("i,ic,if->cf", w, onehots[:, 1:7], self.xs).ravel()
        return np.concatenate([[w.sum()], w @ self.x, w @ onehots, cross])

    def predict(self, beta: np.ndarray, onehots: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """phi . beta for (expected) one-hots of ``rows``, without building phi."""
        b0, bx, ba = beta[0], beta[1 : 1 + self.nf], beta[1 + self.nf : 20 + self.nf]
        bc = beta[20 + self.nf :].reshape(6, self.nc)
        return b0 + self.x[rows] @ bx + onehots @ ba + ((self.xs[rows] @ bc.T) * onehots[:, 1:7]).sum(axis=1)  # type: ignore[no-any-return]


def onehots(actions: np.ndarray) -> np.ndarray:
    out = np.zeros((len(actions), 19))
    rows = np.arange(len(actions))
    out[rows, actions[:, 0]] = 1.0
    contact = actions[:, 0] != 0
    for k, s in ((1, 7), (2, 11), (3, 15)):
        out[rows[contact], s + actions[contact, k]] = 1.0
    return out


def ridge(gram: np.ndarray, rhs: np.ndarray, n: int) -> np.ndarray:
    pen = np.full(len(gram), RIDGE)
    pen[0] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(gram + np.diag(pen) + 1e-9 * n * np.eye(len(gram)), rhs)  # type: ignore[no-any-return]


@dataclass
class Fitted:
    """What every target shares: features, the logged actions' design matrix, folds, bootstrap draws."""

    data: Logged
    feats: Features
    phi: np.ndarray  # (N, dim) at the logged actions
    fold: np.ndarray  # (N,) 0/1 by account
    beta_fold: list[np.ndarray]  # reward model fitted on each fold (predicts the other)
    gram: np.ndarray  # phi' phi over all rows (FQE)
    counts: np.ndarray  # (B, A) bootstrap multiplicities of the accounts
    fold_grams: list[np.ndarray] = field(default_factory=list)  # phi' phi of each fold
    fit_resid: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each row's residual under the model its fold fitted

    @classmethod
    def of(cls, data: Logged, seed: int = 0, bootstrap: int = BOOTSTRAP) -> Fitted:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4F5045]))
        feats = Features(data.x)
        phi = feats.matrix(onehots(data.decisions.actions))
        fold = rng.permutation(data.n_accounts)[data.account] % 2
        grams, rhs = [], []
        for k in (0, 1):
            p = phi[fold == k]
            grams.append(p.T @ p)
            rhs.append(p.T @ data.reward[fold == k])
        # fit on one half, predict the other; the two halves' Gram matrices add up to the whole one (FQE's)
        betas = [ridge(grams[1 - k], rhs[1 - k], int((fold != k).sum())) for k in (0, 1)]
        counts = rng.multinomial(data.n_accounts, np.full(data.n_accounts, 1.0 / data.n_accounts), size=bootstrap).astype(np.float64)
        fit_resid = np.empty(len(data))
        for k in (0, 1):  # fold k's rows fitted betas[1 - k]
            rows = fold == k
            fit_resid[rows] = data.reward[rows] - phi[rows] @ betas[1 - k]
        return cls(data, feats, phi, fold, betas, grams[0] + grams[1], counts, grams, fit_resid)

    def model_bootstrap(self, derivative: list[np.ndarray]) -> np.ndarray:
        """The reward model's own sampling error in an estimate's bootstrap: (B,) terms to add to the
        bootstrap numerators. ``derivative[k]``: the sum, over the rows fold ``k``'s model predicts,
        of d(estimate's numerator)/d(beta). Refitting the model on each bootstrap sample is replaced
        by its one-step linearisation, beta_b - beta = H^-1 sum over accounts of (c_ba - 1) g_a (H the
        ridge system, g_a the account's residual score), exact for the weights to first order and
        cheap: one solve per fold and a matrix-vector product."""
        data = self.data
        vs = []
        for k in (0, 1):  # betas[k] was fitted on the other fold's rows
            h = self.fold_grams[1 - k]
            pen = np.r_[0.0, np.full(len(h) - 1, RIDGE)]
            vs.append(np.linalg.solve(h + np.diag(pen) + 1e-9 * int((self.fold == 1 - k).sum()) * np.eye(len(h)), derivative[k]))
        both = self.phi @ np.stack(vs, axis=1)  # one pass over the design matrix; a row of fold j fitted betas[1 - j]
        s = self.fit_resid * np.where(self.fold == 0, both[:, 1], both[:, 0])
        return (self.counts - 1.0) @ _per_account(data.account, s, data.n_accounts)  # type: ignore[no-any-return]

    def q_logged(self) -> np.ndarray:
        """Cross-fitted reward predictions at the logged actions."""
        out = np.empty(len(self.data))
        for k in (0, 1):
            rows = self.fold == k
            out[rows] = self.phi[rows] @ self.beta_fold[k]
        return out

    def q_target(self, expected: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.data))
        for k in (0, 1):
            rows = np.flatnonzero(self.fold == k)
            out[rows] = self.feats.predict(self.beta_fold[k], expected[rows], rows)
        return out


# ------------------------------------------------------------------ estimates


@dataclass
class Estimate:
    estimator: str
    value: float
    low: float
    high: float
    boot: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "value": self.value, "low": self.low, "high": self.high}


def _ratio(name: str, counts: np.ndarray, num: np.ndarray, den: np.ndarray, model: np.ndarray | None = None) -> Estimate:
    """sum(num) / sum(den) over accounts, with its bootstrap (num, den per account); ``model``: the
    reward model's sampling error in each bootstrap numerator (:meth:`Fitted.model_bootstrap`)."""
    value = float(num.sum() / den.sum()) if den.sum() != 0 else 0.0
    bden = counts @ den
    bnum = counts @ num if model is None else counts @ num + model
    boot = np.where(bden != 0, bnum / np.where(bden != 0, bden, 1.0), 0.0)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Estimate(name, value, float(lo), float(hi), boot)


def _per_account(acc: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(acc, weights=values, minlength=n)


def _stepwise(name: str, counts: np.ndarray, num: np.ndarray, den: np.ndarray, extra: tuple[np.ndarray, np.ndarray] | None = None) -> Estimate:
    """sum over steps t of sum_i num[i, t] / sum_i den[i, t] (+ the same for ``extra`` = (num2, den2))."""

    def value(c: np.ndarray | None) -> np.ndarray:
        n = num.sum(axis=0) if c is None else c @ num
        d = den.sum(axis=0) if c is None else c @ den
        return np.where(d > 0, n / np.where(d > 0, d, 1.0), 0.0).sum(axis=-1)  # type: ignore[no-any-return]

    v = float(value(None))
    boot = value(counts)
    if extra is not None:
        n2, d2 = extra
        v += float(np.where(d2.sum(0) > 0, n2.sum(0) / np.where(d2.sum(0) > 0, d2.sum(0), 1.0), 0.0).sum())
        bn, bd = counts @ n2, counts @ d2
        boot = boot + np.where(bd > 0, bn / np.where(bd > 0, bd, 1.0), 0.0).sum(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Estimate(name, v, float(lo), float(hi), boot)


def _shrink_lambda(w: np.ndarray, resid: np.ndarray) -> float:
    """lambda of the shrunk weights minimising |bias|^2 + variance, both estimated from the data."""
    best, best_err = float("inf"), float("inf")
    n = len(w)
    grid = [x for x in np.quantile(w**2, [0.5, 0.75, 0.9, 0.95, 0.99, 0.999]).tolist() if x > 0]
    for lam in [*grid, float("inf")]:
        ws = w if lam == float("inf") else lam * w / (w**2 + lam)
        term = ws * resid
        bias = float(np.mean((ws - w) * resid))
        err = bias**2 + float(term.var()) / n
        if err < best_err:
            best, best_err = lam, err
    return best


@dataclass
class TargetResult:
    name: str
    policy_id: str
    estimates: dict[str, Estimate]
    diagnostics: dict[str, Any]


def _padded(data: Logged, values: np.ndarray, fill: float) -> np.ndarray:
    """(A, T) per-account sequences of ``values`` (by decision step), padded with ``fill``."""
    acc = data.account
    start = np.flatnonzero(np.append(True, acc[1:] != acc[:-1]))
    pos = np.arange(len(acc)) - np.repeat(start, np.diff(np.append(start, len(acc))))
    out = np.full((data.n_accounts, int(pos.max()) + 1), fill)
    out[acc, pos] = values
    return out


def fqe(fit: Fitted, target_onehots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitted Q evaluation with a linear Q(x, a) = phi . beta: iterate beta <- ridge(phi, r + V(next)),
    V = E_pi Q clipped to what an account can be worth (no more than it still owes, no less than the
    most any account spent on contacts): a linear model extrapolates, and over a long horizon
    without discounting its errors compound. Returns (Q at the logged actions, V under the target)."""
    data = fit.data
    nxt = data.next_row
    has_next = nxt >= 0
    pen = np.r_[0.0, np.full(len(fit.gram) - 1, RIDGE)]
    solve = np.linalg.inv(fit.gram + np.diag(pen) + 1e-9 * len(data) * np.eye(len(fit.gram)))
    upper = data.decisions.views.outstanding_eur
    spent = np.minimum(data.step_reward, 0.0)
    lower = float(np.bincount(data.account, weights=spent, minlength=data.n_accounts).min())
    v = np.zeros(len(data))
    scale = max(1.0, float(np.abs(data.step_reward).mean()))
    beta = np.zeros(len(fit.gram))
    # E_pi phi(x, a) is fixed over the iterations; float32 halves the memory traffic of the two products per iteration
    expected_phi = fit.feats.matrix(target_onehots).astype(np.float32)
    phi_t = np.ascontiguousarray(fit.phi.T, dtype=np.float32)
    nxt_idx = np.maximum(nxt, 0)
    for _ in range(FQE_MAX_ITER):
        y = data.step_reward + np.where(has_next, v[nxt_idx], 0.0)
        beta = solve @ (phi_t @ y.astype(np.float32)).astype(np.float64)
        v_new = np.clip((expected_phi @ beta.astype(np.float32)).astype(np.float64), lower, upper)
        done = float(np.abs(v_new - v).mean()) < 1e-3 * scale  # the estimate moves by less than this
        v = v_new
        if done:
            break
    return np.clip(fit.phi @ beta, lower, upper), v


def evaluate_target(fit: Fitted, target: TargetPolicy, name: str | None = None, sequential: bool = True) -> TargetResult:
    """Every estimator's value of ``target`` on the logged decisions, with its diagnostics
    (``sequential=False``: the per-decision ones only)."""
    data, d = fit.data, fit.data.decisions
    dist: Dist = target.dist(d.views, d.allowed)
    pi = dist.prob(d.actions)
    w = pi / d.propensity
    acc, n_acc, counts = data.account, data.n_accounts, fit.counts
    r = data.reward
    ones = _per_account(acc, np.ones(len(data)), n_acc)
    expected = dist.expected_onehots()
    q_a, q_pi = fit.q_logged(), fit.q_target(expected)
    lam = _shrink_lambda(w, r - q_a)
    ws = w if lam == float("inf") else lam * w / (w**2 + lam)
    # the model-based estimates' intervals include the reward model's own sampling error: d(numerator)/d(beta)
    # is sum of E_pi phi for DM, and sum of (E_pi phi - w phi) for DR (which nearly cancels when the weights are right)
    logged_oh = onehots(d.actions)
    in_fold = [(fit.fold == k).astype(np.float64) for k in (0, 1)]
    pulled = [fit.feats.sums(expected, m) for m in in_fold]

    def corrected(weights: np.ndarray) -> list[np.ndarray]:
        return [pulled[k] - fit.feats.sums(logged_oh, weights * m) for k, m in enumerate(in_fold)]

    est = {
        "ips": _ratio("ips", counts, _per_account(acc, w * r, n_acc), ones),
        "snips": _ratio("snips", counts, _per_account(acc, w * r, n_acc), _per_account(acc, w, n_acc)),
        "dm": _ratio("dm", counts, _per_account(acc, q_pi, n_acc), ones, fit.model_bootstrap(pulled)),
        "dr": _ratio("dr", counts, _per_account(acc, q_pi + w * (r - q_a), n_acc), ones, fit.model_bootstrap(corrected(w))),
        "dr_shrink": _ratio("dr_shrink", counts, _per_account(acc, q_pi + ws * (r - q_a), n_acc), ones, fit.model_bootstrap(corrected(ws))),
    }
    top = np.sort(w)[-5:][::-1]
    diag = {
        "decisions": len(data),
        "accounts": n_acc,
        "ess": float(w.sum() ** 2 / max((w**2).sum(), 1e-300)),
        "ess_share": float(w.sum() ** 2 / max((w**2).sum(), 1e-300) / len(w)),
        "support_deficiency": float(dist.mass_outside(d.logger).mean()),
        "zero_weight_share": float((w == 0).mean()),
        "largest_weights": [float(x) for x in top],
        "shrinkage_lambda": None if lam == float("inf") else float(lam),
    }
    if not sequential:
        return TargetResult(name or target.name, target.policy_id, est, diag)
    # per account: cumulative weights along each account's decisions
    rho = np.cumprod(_padded(data, w, 1.0), axis=1)
    rs = _padded(data, data.step_reward, 0.0)
    est["wpdis"] = _stepwise("wpdis", counts, rho * rs, rho)
    q_seq, v_seq = fqe(fit, expected)
    qp, vp = _padded(data, q_seq, 0.0), _padded(data, v_seq, 0.0)
    rho_prev = np.hstack([np.ones((n_acc, 1)), rho[:, :-1]])
    est["wdr"] = _stepwise("wdr", counts, rho * (rs - qp), rho, (rho_prev * vp, rho_prev))
    first = np.flatnonzero(np.append(True, acc[1:] != acc[:-1]))
    est["fqe"] = _ratio("fqe", counts, v_seq[first], np.ones(n_acc))
    final = rho[np.arange(n_acc), np.bincount(acc, minlength=n_acc) - 1]
    diag["ess_accounts"] = float(final.sum() ** 2 / max((final**2).sum(), 1e-300))
    return TargetResult(name or target.name, target.policy_id, est, diag)


def logged_value(fit: Fitted) -> dict[str, Estimate]:
    """The logging policy's own values: the mean observed reward, the mean net cash per account."""
    data = fit.data
    acc, n = data.account, data.n_accounts
    return {
        "decision": _ratio("logged", fit.counts, _per_account(acc, data.reward, n), _per_account(acc, np.ones(len(data)), n)),
        "account": _ratio("logged", fit.counts, _per_account(acc, data.step_reward, n), np.ones(n)),
    }


# ------------------------------------------------------------------ verdict


@dataclass
class Verdict:
    challenger: str
    champion: str
    estimator: str
    diff: float
    low: float
    high: float
    decisions: int
    word: str  # "better", "worse", "cannot tell"
    more_decisions: int | None  # roughly how many more logged decisions would decide it

    @property
    def unit(self) -> str:
        return "per account" if self.estimator in ACCOUNT_ESTIMATORS else "per decision"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("challenger", "champion", "estimator", "diff", "low", "high", "decisions", "word", "more_decisions")}

    def sentence(self) -> str:
        head = (
            f"**{self.challenger}** vs **{self.champion}** ({LABELS[self.estimator]}): difference {self.diff:+.3f} EUR {self.unit}, "
            f"95 % interval [{self.low:+.3f}, {self.high:+.3f}]"
        )
        if self.word == "better":
            return head + f": the challenger is **better** than the champion on these logs ({self.decisions:,} decisions)."
        if self.word == "worse":
            return head + f": the challenger is **worse** than the champion on these logs ({self.decisions:,} decisions)."
        more = (
            "far more logging than is practical (the difference is about zero)"
            if self.more_decisions is None
            else f"about {self.more_decisions:,} more decisions"
        )
        return head + f": **cannot tell** from these logs; with intervals narrowing as 1/sqrt(n), {more} would decide it."


def verdict(challenger: str, champion: str, estimator: str, chal: Estimate, champ: Estimate, decisions: int) -> Verdict:
    diff_boot = chal.boot - champ.boot
    diff = chal.value - champ.value
    lo, hi = (float(x) for x in np.percentile(diff_boot, [2.5, 97.5]))
    if lo > 0:
        return Verdict(challenger, champion, estimator, diff, lo, hi, decisions, "better", 0)
    if hi < 0:
        return Verdict(challenger, champion, estimator, diff, lo, hi, decisions, "worse", 0)
    half = (hi - lo) / 2
    if abs(diff) < 1e-9 or (half / abs(diff)) ** 2 > 1e4:
        return Verdict(challenger, champion, estimator, diff, lo, hi, decisions, "cannot tell", None)
    needed = decisions * (half / abs(diff)) ** 2
    return Verdict(challenger, champion, estimator, diff, lo, hi, decisions, "cannot tell", int(np.ceil(needed - decisions)))


# ------------------------------------------------------------------ the command: estimates, report, verdict


def run_ope(
    logs: str | Path,
    policies: list[str],
    out: str | Path,
    *,
    champion: str | None = None,
    estimator: str = "dr",
    reward_days: int = REWARD_DAYS,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    profile: str = "us_reg_f",
) -> dict[str, Any]:
    """Evaluate ``policies`` on the logs in ``logs``; write ope.json, report.md, report.html and the
    figure to ``out``; the verdict compares each policy with ``champion`` (default: the logging
    policy, whose value on its own logs is the observed mean)."""
    if estimator not in DECISION_ESTIMATORS + ACCOUNT_ESTIMATORS:
        raise UsageError(f"unknown estimator {estimator!r}; choose one of {', '.join(DECISION_ESTIMATORS + ACCOUNT_ESTIMATORS)}")
    if not policies:
        raise UsageError("give at least one --policy to evaluate")
    targets = [TargetPolicy(p) for p in policies]  # unknown names fail before the logs are read
    champ_target = TargetPolicy(champion) if champion is not None else None
    data = load_logs(logs, reward_days, profile)
    fit = Fitted.of(data, seed, bootstrap)
    from tqdm import tqdm

    results = [evaluate_target(fit, t, p) for p, t in tqdm(list(zip(policies, targets, strict=True)), desc="ope", unit="policy", leave=False)]
    logged = logged_value(fit)
    level = "account" if estimator in ACCOUNT_ESTIMATORS else "decision"
    if champ_target is not None:
        champ_res = evaluate_target(fit, champ_target, champion)
        champ_name, champ_est = str(champion), champ_res.estimates[estimator]
    else:
        champ_name, champ_est = f"{'/'.join(sorted(set(data.decisions.policy_id.tolist())))} (logged)", logged[level]
    verdicts = [verdict(r.name, champ_name, estimator, r.estimates[estimator], champ_est, len(data)) for r in results]
    summary = {
        "logs": str(logs),
        "decisions": len(data),
        "accounts": data.n_accounts,
        "logging_policies": sorted(set(data.decisions.policy_id.tolist())),
        "reward_days": reward_days,
        "bootstrap": bootstrap,
        "seed": seed,
        "estimator": estimator,
        "logged": {k: v.as_dict() for k, v in logged.items()},
        "policies": {
            r.name: {"policy_id": r.policy_id, "estimates": {k: e.as_dict() for k, e in r.estimates.items()}, "diagnostics": r.diagnostics}
            for r in results
        },
        "champion": champ_name,
        "verdicts": [v.as_dict() for v in verdicts],
    }
    write_report(Path(out), summary, results, logged, verdicts)
    return summary


def _figure(results: list[TargetResult], logged: dict[str, Estimate], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 + 0.45 * len(results) * 3), dpi=110)
    for ax, names, level, unit in (
        (axes[0], DECISION_ESTIMATORS, "decision", "EUR per decision"),
        (axes[1], ACCOUNT_ESTIMATORS, "account", "EUR per account"),
    ):
        ticks, labels = [], []
        y = 0.0
        for r in results:
            for k, name in enumerate(names):
                e = r.estimates[name]
                ax.errorbar(
                    [e.value],
                    [y],
                    xerr=[[e.value - e.low], [e.high - e.value]],
                    fmt="o",
                    color=f"C{k}",
                    label=LABELS[name] if r is results[0] else None,
                )
                y += 1
            ticks.append(y - (len(names) + 1) / 2)
            labels.append(r.name if len(r.name) < 28 else "..." + r.name[-25:])
            y += 1
        ax.axvline(logged[level].value, color="0.4", ls="--", lw=1, label="logged (on-policy)")
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_title(f"per decision ({REWARD_DAYS}-day net cash)", fontsize=9)
    axes[1].set_title("per account (net cash over the log)", fontsize=9)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out


def _fmt_iv(e: dict[str, Any] | Estimate) -> str:
    d = e.as_dict() if isinstance(e, Estimate) else e
    return f"{d['value']:.2f} [{d['low']:.2f}, {d['high']:.2f}]"


def markdown(summary: dict[str, Any], verdicts: list[Verdict]) -> str:
    lines = [
        "# Off-policy evaluation",
        "",
        f"Logs: `{summary['logs']}`: {summary['decisions']:,} decisions on {summary['accounts']:,} accounts by "
        f"{', '.join(summary['logging_policies'])}. Per-decision reward: cash paid within {summary['reward_days']} days of the "
        f"decision, net of its contact's cost (EUR). Per-account value: net cash over the log (EUR). Intervals: 95 %, "
        f"{summary['bootstrap']} bootstrap resamples of the accounts (seed {summary['seed']}).",
        "",
        f"Logged (on-policy) value: {_fmt_iv(summary['logged']['decision'])} per decision, {_fmt_iv(summary['logged']['account'])} per account.",
        "",
        "## Per decision",
        "",
        "| policy | " + " | ".join(LABELS[n] for n in DECISION_ESTIMATORS) + " |",
        "|---|" + "---|" * len(DECISION_ESTIMATORS),
    ]
    for name, r in summary["policies"].items():
        lines.append(f"| `{name}` | " + " | ".join(_fmt_iv(r["estimates"][n]) for n in DECISION_ESTIMATORS) + " |")
    lines += [
        "",
        "## Per account",
        "",
        "| policy | " + " | ".join(LABELS[n] for n in ACCOUNT_ESTIMATORS) + " |",
        "|---|" + "---|" * len(ACCOUNT_ESTIMATORS),
    ]
    for name, r in summary["policies"].items():
        lines.append(f"| `{name}` | " + " | ".join(_fmt_iv(r["estimates"][n]) for n in ACCOUNT_ESTIMATORS) + " |")
    lines += [
        "",
        "![estimates](estimates.png)",
        "",
        "## Diagnostics",
        "",
        "Kish effective sample size of the per-decision weights (and its share of the decisions), of the accounts' "
        "cumulative weights; the target's probability mass on actions the logger never takes (support deficiency: "
        "there, IPS is biased and only a model can speak); the largest weights.",
        "",
        "| policy | ESS (decisions) | ESS share | ESS (accounts) | support deficiency | zero weights | largest weights |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["policies"].items():
        dg = r["diagnostics"]
        lines.append(
            f"| `{name}` | {dg['ess']:,.0f} | {dg['ess_share']:.1%} | {dg['ess_accounts']:,.1f} | {dg['support_deficiency']:.1%} | "
            f"{dg['zero_weight_share']:.1%} | {', '.join(f'{w:.3g}' for w in dg['largest_weights'])} |"
        )
    warn = [n for n, r in summary["policies"].items() if r["diagnostics"]["support_deficiency"] > 0.01 or r["diagnostics"]["ess_share"] < 0.01]
    if warn:
        lines += [
            "",
            f"Caution: {', '.join(f'`{n}`' for n in warn)} differ from the logger so much that the weights rest on few decisions "
            "(ESS under 1 %) or on actions the logger never took; prefer the doubly robust estimates and read their intervals.",
        ]
    lines += ["", "## Verdict", ""]
    lines += [f"- {v.sentence()}" for v in verdicts]
    return "\n".join(lines) + "\n"


def write_report(out: Path, summary: dict[str, Any], results: list[TargetResult], logged: dict[str, Estimate], verdicts: list[Verdict]) -> list[Path]:
    from experiments.io import clean_json
    from experiments.whatif_report import render_html

    out.mkdir(parents=True, exist_ok=True)
    fig = _figure(results, logged, out / "estimates.png")
    md = markdown(summary, verdicts)
    page = render_html(md, "Off-policy evaluation", out)
    atomic_write(out / "report.md", lambda p: p.write_text(md))
    atomic_write(out / "report.html", lambda p: p.write_text(page))
    atomic_write(out / "ope.json", lambda p: p.write_text(json.dumps(clean_json(summary), indent=2) + "\n"))
    return [out / "report.md", out / "report.html", out / "ope.json", fig]


# ------------------------------------------------------------------ checked against the truth


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        for v in np.unique(x):
            tie = x == v
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(np.asarray(a, dtype=np.float64)), ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def simulate_logged(
    scenario: Any,
    policy: str,
    debtors: int,
    seed: int,
    epsilon: float,
    horizon_days: int | None,
    reward_days: int,
    probe: str | None = None,
    probe_share: float = 0.0,
) -> Logged:
    """A logged run in memory: ``policy`` sampling (with ``epsilon``) on the debtors and luck of
    ``seed``. With a ``probe``, a share ``probe_share`` of the decisions is made by the probe policy
    instead, and only those decisions are returned (the one-decision ground truth of the bench)."""
    from experiments.decision_log import LoggingPolicy, history_of
    from sim.runner import run_portfolio

    logger = LoggingPolicy(TargetPolicy(policy), epsilon, seed, probe=TargetPolicy(probe) if probe else None, probe_share=probe_share)
    world = run_portfolio(scenario, logger, debtors, seed, horizon_days=horizon_days, record_events=True)  # type: ignore[arg-type]
    table = logger.table()
    history = history_of(world, {"source": "ope bench", "seed": seed})
    if probe:
        table = table.take(np.flatnonzero(logger.probe_flags()))
    return join(table, history, reward_days)


def one_decision_truth(
    scenario: Any,
    logger: str,
    epsilon: float,
    target: str,
    debtors: int,
    seed: int,
    horizon_days: int | None,
    reward_days: int,
    share: float = PROBE_SHARE,
) -> tuple[float, float]:
    """What the per-decision estimators estimate: the mean reward when ``target`` makes one decision
    on the logger's accounts and the logger the rest. Measured by letting ``target`` make a small
    random share of the decisions (a continuation that is the logger's but for that share).
    Returns the value and its standard error (clustered by account: a ratio of account sums)."""
    probe = simulate_logged(scenario, logger, debtors, seed, epsilon, horizon_days, reward_days, target, share)
    sums = _per_account(probe.account, probe.reward, probe.n_accounts)
    return ratio_with_se(sums, _per_account(probe.account, np.ones(len(probe)), probe.n_accounts))


def ratio_with_se(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """sum(num) / sum(den) over independent units and its standard error (the delta method)."""
    value = float(num.sum() / den.sum())
    return value, float(np.sqrt(((num - value * den) ** 2).sum()) / den.sum())


def bench(
    scenario: Any,
    *,
    logger: str = "static_ladder",
    epsilon: float = 0.1,
    targets: tuple[str, ...] = BENCH_TARGETS,
    repetitions: int = 20,
    debtors: int = 2000,
    horizon_days: int | None = None,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP,
    reward_days: int = REWARD_DAYS,
    truth_debtors: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Log ``logger`` (with ``epsilon``) and estimate every target's value, ``repetitions`` times on
    fresh debtors; each target's true values come from running it on the same debtors and luck.
    Per estimator: bias, RMSE, interval coverage and the rank correlation of the targets."""
    from tqdm import tqdm

    for t in targets:
        TargetPolicy(t)  # names checked before any simulation
    bar = tqdm(total=(repetitions + 1) * (len(targets) + 1) - 1, desc="ope bench", unit="run", disable=not progress, leave=False)
    # the per-decision estimand is a population quantity: one large probe run per target, on its own debtors
    one_step, one_step_se = {}, {}
    for t in targets:
        one_step[t], one_step_se[t] = one_decision_truth(
            scenario, logger, epsilon, t, truth_debtors or max(TRUTH_DEBTORS, 4 * debtors), seed + 1_000_003, horizon_days, reward_days
        )
        bar.update()
    rows: list[dict[str, Any]] = []
    for rep in range(repetitions):
        s = seed + rep
        data = simulate_logged(scenario, logger, debtors, s, epsilon, horizon_days, reward_days)
        bar.update()
        fit = Fitted.of(data, s, bootstrap)
        for t in targets:
            truth = simulate_logged(scenario, t, debtors, s, 0.0, horizon_days, reward_days)
            bar.update()
            res = evaluate_target(fit, TargetPolicy(t), t)
            true = {"decision": one_step[t], "account": truth.account_value}
            for name, e in res.estimates.items():
                level = "account" if name in ACCOUNT_ESTIMATORS else "decision"
                rows.append(
                    {
                        "rep": rep,
                        "target": t,
                        "estimator": name,
                        "value": e.value,
                        "low": e.low,
                        "high": e.high,
                        "truth": true[level],
                        "on_policy_truth": float(truth.reward.mean()) if level == "decision" else truth.account_value,
                    }
                )
            rows.append({"rep": rep, "target": t, "estimator": "_diag", **res.diagnostics, "truth": true["account"]})
    bar.close()
    return {
        "scenario": scenario.name,
        "logger": logger,
        "epsilon": epsilon,
        "targets": list(targets),
        "repetitions": repetitions,
        "debtors": debtors,
        "seed": seed,
        "reward_days": reward_days,
        "one_decision_truth": one_step,
        "one_decision_truth_se": one_step_se,
        "truth_debtors": truth_debtors or max(TRUTH_DEBTORS, 4 * debtors),
        "table": bench_table(rows, list(targets), repetitions, one_step_se),
        "rows": [r for r in rows if r["estimator"] != "_diag"],
    }


def known_pairs(truth: dict[str, float], se: dict[str, float] | None) -> list[tuple[str, str]]:
    """The target pairs whose true order is known (:func:`experiments.stats.known_pairs`), the truths
    being independent estimates with standard errors ``se`` (None: exact truths, every pair that differs)."""
    return stats.known_pairs(truth, lambda a, b: 0.0 if se is None else 2.0 * math.hypot(se[a], se[b]))


def bench_table(
    rows: list[dict[str, Any]], targets: list[str], repetitions: int, truth_se: dict[str, float] | None = None
) -> dict[str, dict[str, float]]:
    """Per estimator: mean |bias| over targets, RMSE, coverage, mean Spearman over repetitions, and
    the share of target pairs with a known true order (:func:`known_pairs`; per decision with the
    truths' standard errors ``truth_se``, per account exact) that the estimates put in that order."""
    out: dict[str, dict[str, float]] = {}
    for name in DECISION_ESTIMATORS + ACCOUNT_ESTIMATORS:
        rs = [r for r in rows if r["estimator"] == name]
        err = np.array([r["value"] - r["truth"] for r in rs])
        cover = np.array([r["low"] <= r["truth"] <= r["high"] for r in rs])
        bias = [abs(np.mean([r["value"] - r["truth"] for r in rs if r["target"] == t])) for t in targets]
        rel = [
            abs(np.mean([r["value"] - r["truth"] for r in rs if r["target"] == t]))
            / max(1e-9, abs(np.mean([r["truth"] for r in rs if r["target"] == t])))
            for t in targets
        ]
        rhos, ordered, pairs = [], 0, 0
        for rep in range(repetitions):
            by = {t: next(r for r in rs if r["rep"] == rep and r["target"] == t) for t in targets}
            rhos.append(spearman(np.array([by[t]["value"] for t in targets]), np.array([by[t]["truth"] for t in targets])))
            se = truth_se if name in DECISION_ESTIMATORS and truth_se else None
            for a, b in known_pairs({t: by[t]["truth"] for t in targets}, se):
                pairs += 1
                ordered += (by[a]["value"] - by[b]["value"]) * (by[a]["truth"] - by[b]["truth"]) > 0
        out[name] = {
            "mean_abs_bias": float(np.mean(bias)),
            "mean_rel_bias": float(np.mean(rel)),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "coverage": float(cover.mean()),
            "spearman": float(np.nanmean(rhos)) if not np.all(np.isnan(rhos)) else float("nan"),
            "known_pairs": pairs / max(repetitions, 1),
            "known_pairs_ordered": ordered / pairs if pairs else float("nan"),
        }
    return out


def bench_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"OPE bench: scenario {result['scenario']}, logger {result['logger']} (epsilon {result['epsilon']}), "
        f"{result['repetitions']} repetitions x {result['debtors']:,} debtors, targets {', '.join(result['targets'])}",
        "",
        "| estimator | level | mean abs bias | mean rel. bias | RMSE | coverage (95 % interval) | Spearman | known pairs ordered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["table"].items():
        level = "account" if name in ACCOUNT_ESTIMATORS else "decision"
        cells = f"{m['mean_abs_bias']:.2f} | {m['mean_rel_bias']:.1%} | {m['rmse']:.2f} | {m['coverage']:.0%} | {m['spearman']:.2f}"
        cells += f" | {m.get('known_pairs_ordered', float('nan')):.0%} of {m.get('known_pairs', 0):.0f}"
        lines.append(f"| {LABELS[name]} | {level} | {cells} |")
    lines += [
        "",
        f"True values. Per decision: the target making a random {PROBE_SHARE:.1%} of the logger's decisions on "
        f"{result.get('truth_debtors', 0):,} debtors of their own, +- one standard error (clustered by account); targets closer "
        "than about two standard errors have no known order, and no estimator can be ranked on them. Per account: the target "
        "run on each repetition's debtors and luck (mean over repetitions). Known pairs ordered: of the target pairs whose true "
        "order is known (per decision: truths more than two standard errors of their difference apart; per account: every pair, "
        "the truths being exact), the share the estimates put in that order (and how many pairs a repetition has).",
        "",
        "| target | per decision (EUR) | per account (EUR) |",
        "|---|---|---|",
    ]
    se = result.get("one_decision_truth_se", {})
    for t in result["targets"]:
        acc = [r["truth"] for r in result["rows"] if r["target"] == t and r["estimator"] == ACCOUNT_ESTIMATORS[0]]
        lines.append(f"| {t} | {result['one_decision_truth'][t]:.2f} +- {se.get(t, float('nan')):.2f} | {np.mean(acc):.2f} |")
    return "\n".join(lines) + "\n"

"""Confidence intervals for simulated KPIs and for paired differences: one method for every table.

``collectrl evaluate``, the what-if report and the leaderboard all state their uncertainty with the
functions here, so one number never carries two intervals.

Replicates
----------
A run (one policy, one seed) is split into ``BATCHES`` batches of debtors by debtor id
(``id mod BATCHES``); the KPI is computed on each batch. The replicates are the
``seeds x BATCHES`` batch values. Batches of one run share the call centre and the calendar, so
they are not perfectly independent; seeds bring the between-run variation in. Two runs on the
same seed face the same debtors (common random numbers), so batch ``b`` of one run holds the same
debtors as batch ``b`` of the other: that is what makes a difference *paired*.

Intervals (95 %)
----------------
* **Levels** (EUR per debtor, contacts per debtor, days): the point estimate is the mean over
  seeds of the whole-run KPI; the half-width is ``t(0.975, n-1) x sd / sqrt(n)`` over the ``n``
  batch values. Totals (blocked actions, dropped calls) scale the batch values to a whole run.
* **Rates** (shares in [0, 1]: complaints, recovery by amount, ...): a Wilson score interval whose
  sample size is the effective one the batch means imply, ``n_eff = p (1 - p) / se^2`` (with the
  same t quantile). Far from 0 and 1 it equals the interval above; near them it stays inside
  [0, 1], as a rate must. When every batch shows the same rate (no complaint at all, say) there is
  no spread to measure and ``n_eff`` is the number of debtors.
* **Paired differences** (a variant against the base, a challenger against the champion): the
  point estimate is the mean over seeds of the whole-run differences; the replicates are the
  per-batch differences on the same debtors, with the t interval above and its two-sided p-value
  from the same t distribution, so "significant at 5 %" and "the interval excludes 0" always agree.
* **Ratios** (the normalised score ``(V(p) - V(lo)) / (V(hi) - V(lo))``): the delta method over
  the same paired batch values.

The Student t distribution is computed here (the regularised incomplete beta function), so the
quantiles and p-values are exact for any number of replicates without a statistics library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

BATCHES = 10
Values = Sequence[float] | np.ndarray  # one value per seed
Batches = Sequence[Sequence[float]] | Sequence[np.ndarray] | np.ndarray  # per seed, one value per batch
LEVEL = 0.95
Z95 = 1.959963984540054

# KPIs that are shares of something, each in [0, 1]; they get the Wilson interval
RATE_KPIS = frozenset({"recovery_rate_amount", "recovery_rate_count", "resolution_rate", "rpc_rate", "complaint_rate", "opt_out_rate", "churn_rate"})
# KPIs that are totals over the run (a batch holds a tenth of them)
TOTAL_KPIS = frozenset({"debtors", "blocked_actions", "capacity_dropped_calls"})


# ---------------------------------------------------------------------------- Student t


def _regularised_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (DLMF 8.17.22), evaluated with the modified Lentz method."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _regularised_incomplete_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    tiny = 1e-300
    f, c, d = tiny, tiny, 0.0
    for j in range(1, 10_000):
        if j == 1:
            coef = 1.0
        else:
            m = j - 1  # the m-th partial numerator d_m
            k = m // 2
            if m % 2:
                coef = -(a + k) * (a + b + k) * x / ((a + 2 * k) * (a + 2 * k + 1))
            else:
                coef = k * (b - k) * x / ((a + 2 * k - 1) * (a + 2 * k))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coef / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f


def t_p_value(t: float, df: float) -> float:
    """Two-sided p-value of a Student t statistic with ``df`` degrees of freedom.

    >>> round(t_p_value(2.262, 9), 3)
    0.05
    """
    if not math.isfinite(t):
        return 0.0 if math.isinf(t) else float("nan")
    if df <= 0:
        return float("nan")
    return _regularised_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


@lru_cache(maxsize=256)
def t_quantile(df: float, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t (12.706 for 1 degree of freedom at 95 %).

    >>> round(t_quantile(4), 3)
    2.776
    """
    if df <= 0:
        return float("nan")
    alpha = 1.0 - level
    lo, hi = 0.0, 1.0
    while t_p_value(hi, df) > alpha:
        hi *= 2.0
    for _ in range(200):  # bisection: the p-value falls as t grows
        mid = (lo + hi) / 2.0
        if t_p_value(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return (lo + hi) / 2.0


# ---------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % interval, the number of replicates behind it and how it was made.

    ``p_value`` is set for differences (the hypothesis: no difference)."""

    mean: float
    low: float
    high: float
    replicates: int = 0
    method: str = ""
    p_value: float | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (for a difference: significant at 5 %)."""
        return bool(self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "replicates": self.replicates, "method": self.method}
        if self.p_value is not None:
            out["p_value"] = self.p_value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        """The inverse of ``as_dict`` (null bounds, as JSON writes NaN, become NaN)."""

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(num(d["mean"]), num(d["ci_low"]), num(d["ci_high"]), int(d.get("replicates", 0)), str(d.get("method", "")), d.get("p_value"))


NAN_INTERVAL = Interval(float("nan"), float("nan"), float("nan"))


def _finite_mean(values: Sequence[float] | np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _replicates(batch_values: Batches) -> np.ndarray:
    v = np.asarray(batch_values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _t_interval(center: float, values: np.ndarray, scale: float, method: str) -> tuple[Interval, float]:
    """``center`` +- t x sd / sqrt(n); also returns the standard error."""
    n = len(values)
    if n < 2 or not math.isfinite(center):
        return Interval(center, float("nan"), float("nan"), n, method), float("nan")
    se = float(np.std(values, ddof=1)) / math.sqrt(n) * scale
    hw = t_quantile(n - 1) * se
    return Interval(center, center - hw, center + hw, n, method), se


def level_interval(seed_values: Values, batch_values: Batches, scale: float = 1.0) -> Interval:
    """A KPI that is a level (EUR, counts per debtor): seeds' mean, t interval over the batch values.

    ``seed_values`` holds the whole-run KPI of each seed; ``batch_values`` the KPI of each
    (seed, batch), shape ``(seeds, BATCHES)``; ``scale`` turns a batch value into a whole-run one."""
    iv, _ = _t_interval(_finite_mean(seed_values), _replicates(batch_values), scale, "batch means, t")
    return iv


def wilson(p: float, n_eff: float, quantile: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` seen in ``n_eff`` trials.

    >>> lo, hi = wilson(0.0, 100, 1.96)
    >>> lo, round(hi, 4)
    (0.0, 0.037)
    """
    q2 = quantile * quantile / n_eff
    center = (p + q2 / 2) / (1 + q2)
    hw = quantile / (1 + q2) * math.sqrt(p * (1 - p) / n_eff + q2 / (4 * n_eff))
    return max(0.0, center - hw), min(1.0, center + hw)


def rate_interval(seed_values: Values, batch_values: Batches, units: float) -> Interval:
    """A KPI that is a share in [0, 1]: Wilson score interval on the batch-means effective sample size.

    ``units`` is the number of debtors behind the estimate (all seeds), used only when the batches
    show no spread at all."""
    p = _finite_mean(seed_values)
    values = _replicates(batch_values)
    n = len(values)
    if n < 2 or not math.isfinite(p):
        return Interval(p, float("nan"), float("nan"), n, "Wilson")
    p = min(1.0, max(0.0, p))
    se = float(np.std(values, ddof=1)) / math.sqrt(n)
    n_eff = p * (1 - p) / (se * se) if se > 0 and 0 < p < 1 else float(units)
    if n_eff <= 0:
        return Interval(p, float("nan"), float("nan"), n, "Wilson")
    low, high = wilson(p, n_eff, t_quantile(n - 1))
    return Interval(p, min(low, p), max(high, p), n, "Wilson on batch means")


def kpi_interval(kpi: str, seed_values: Values, batch_values: Batches, units: float) -> Interval:
    """The interval of one KPI, by its kind: a rate, a total or a level."""
    if kpi in RATE_KPIS:
        return rate_interval(seed_values, batch_values, units)
    return level_interval(seed_values, batch_values, float(BATCHES) if kpi in TOTAL_KPIS else 1.0)


def paired_difference(
    seed_a: Values,
    seed_b: Values,
    batch_a: Batches,
    batch_b: Batches,
    scale: float = 1.0,
) -> Interval:
    """``a - b`` for two runs per seed on the same debtors: t interval over the per-batch differences,
    with the two-sided p-value of "no difference" from the same t distribution."""
    d_seed = np.asarray(seed_a, dtype=np.float64) - np.asarray(seed_b, dtype=np.float64)
    d_batch = _replicates(np.asarray(batch_a, dtype=np.float64) - np.asarray(batch_b, dtype=np.float64))
    center = _finite_mean(d_seed)
    iv, se = _t_interval(center, d_batch, scale, "paired batch means, t")
    if not math.isfinite(se):
        return iv
    if se == 0:
        p = 1.0 if center == 0 else 0.0
    else:
        p = t_p_value(center / se, len(d_batch) - 1)
    return Interval(iv.mean, iv.low, iv.high, iv.replicates, iv.method, p)


def unpaired_difference(
    seed_a: Values,
    seed_b: Values,
    batch_a: Batches,
    batch_b: Batches,
) -> Interval:
    """``a - b`` as if the runs were independent (Welch): what the same runs say without pairing."""
    va, vb = _replicates(batch_a), _replicates(batch_b)
    center = _finite_mean(np.asarray(seed_a, dtype=np.float64) - np.asarray(seed_b, dtype=np.float64))
    if len(va) < 2 or len(vb) < 2:
        return Interval(center, float("nan"), float("nan"), min(len(va), len(vb)), "Welch")
    sa, sb = float(np.var(va, ddof=1)) / len(va), float(np.var(vb, ddof=1)) / len(vb)
    se = math.sqrt(sa + sb)
    df = (sa + sb) ** 2 / (sa * sa / (len(va) - 1) + sb * sb / (len(vb) - 1)) if sa + sb > 0 else len(va) + len(vb) - 2
    hw = t_quantile(df) * se
    return Interval(center, center - hw, center + hw, min(len(va), len(vb)), "Welch on batch means")


def ratio_interval(
    seed_num: Values,
    seed_den: Values,
    batch_num: Batches,
    batch_den: Batches,
) -> Interval:
    """``mean(num) / mean(den)`` with a delta-method t interval over the paired batch values."""
    m_num, m_den = _finite_mean(seed_num), _finite_mean(seed_den)
    if not math.isfinite(m_den) or abs(m_den) < 1e-12:
        return NAN_INTERVAL
    r = m_num / m_den
    num, den = np.asarray(batch_num, dtype=np.float64).ravel(), np.asarray(batch_den, dtype=np.float64).ravel()
    ok = np.isfinite(num) & np.isfinite(den)
    residual = num[ok] - r * den[ok]
    iv, _ = _t_interval(r, residual, 1.0 / abs(m_den), "paired batch means, delta method")
    return iv


def batch_means(values: np.ndarray, debtor_id: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
    """The mean of a per-debtor column in each of the ``BATCHES`` batches (NaN for an empty batch)."""
    batch = np.asarray(debtor_id, dtype=np.int64) % BATCHES
    v = np.asarray(values, dtype=np.float64)
    if subset is not None:
        batch, v = batch[subset], v[subset]
    sums = np.bincount(batch, weights=v, minlength=BATCHES)
    counts = np.bincount(batch, minlength=BATCHES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# ---------------------------------------------------------------------------- words


def method_note(seeds: int, batches: int = BATCHES, paired: bool = False) -> str:
    """The sentence that goes under a table: the replicates and how the intervals were made."""
    n = seeds * batches
    seed_words = f"{seeds} seed{'s' if seeds != 1 else ''}"
    base = f"95 % confidence intervals from batch means: {seed_words} x {batches} debtor batches = {n} replicates"
    base += f" (Student t, {n - 1} degrees of freedom)"
    if paired:
        return (
            base + ". Each replicate is the difference on one batch of the same debtors under the same luck (common random numbers), "
            "so the differences are paired per debtor; p-values come from the same t distribution."
        )
    return base + "; rates by a Wilson score interval on the effective sample size the batches imply, so they stay within [0, 1]."


def format_interval(iv: Interval, fmt: str, signed: bool = False) -> str:
    """``mean [low, high]`` in the KPI's format (``+`` signs for differences); just the mean without an interval.

    >>> format_interval(Interval(0.0195, 0.012, 0.031), ".2%")
    '1.95% [1.20%, 3.10%]'
    """

    def f(v: float) -> str:
        if v is None or not math.isfinite(v):
            return "n/a"
        s = format(v, fmt)
        return f"+{s}" if signed and v > 0 else s

    if not math.isfinite(iv.low):
        return f(iv.mean)
    return f"{f(iv.mean)} [{f(iv.low)}, {f(iv.high)}]"


def format_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def known_pairs(values: Mapping[str, float], margin: Callable[[str, str], float]) -> list[tuple[str, str]]:
    """The pairs (names in sorted order) whose order is known: their values differ by more than
    ``margin(a, b)``, two standard errors of the difference (how those are had depends on whether the
    values are independent estimates or share their debtors and luck)."""
    return [(a, b) for a, b in itertools.combinations(sorted(values), 2) if abs(values[a] - values[b]) > margin(a, b)]

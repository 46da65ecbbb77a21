"""The KPI definitions: one place, used by ``simulate``, evaluation, calibration and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.compliance import BLOCK_NAMES
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.world import Status, World


@dataclass(frozen=True)
class KpiSpec:
    name: str
    label: str
    fmt: str  # format spec for tables


KPIS: tuple[KpiSpec, ...] = (
    KpiSpec("debtors", "debtors", ",.0f"),
    KpiSpec("recovery_rate_amount", "recovery rate by amount", ".1%"),
    KpiSpec("recovery_rate_count", "recovery rate by count (any payment)", ".1%"),
    KpiSpec("resolution_rate", "resolved (paid, settled, plan done)", ".1%"),
    KpiSpec("net_value_per_debtor", "net value per debtor (EUR, discounted)", ",.2f"),
    KpiSpec("collected_per_debtor", "collected per debtor (EUR)", ",.2f"),
    KpiSpec("contact_cost_per_debtor", "contact cost per debtor (EUR)", ",.2f"),
    KpiSpec("cost_to_collect", "cost to collect (cost / collected)", ".2%"),
    *(KpiSpec(f"contacts_per_debtor_{c}", f"contacts per debtor: {c}", ".2f") for c in CONTACT_CHANNEL_NAMES),
    KpiSpec("contacts_per_debtor", "contacts per debtor: all", ".2f"),
    KpiSpec("firm_contacts_per_debtor", "firm-tone contacts per debtor", ".2f"),
    KpiSpec("rpc_rate", "right-party contact per call made", ".1%"),
    KpiSpec("complaint_rate", "debtors who complained", ".2%"),
    KpiSpec("opt_out_rate", "debtors who opted out of a channel", ".2%"),
    KpiSpec("churn_rate", "resolved customers who churned", ".1%"),
    KpiSpec("blocked_actions", "blocked actions (compliance)", ",.0f"),
    KpiSpec("capacity_dropped_calls", "calls dropped (call-centre capacity)", ",.0f"),
    KpiSpec("median_days_to_first_payment", "median days to first payment (payers)", ".0f"),
)
KPI_NAMES: tuple[str, ...] = tuple(k.name for k in KPIS)


def portfolio_kpis(w: World, subset: np.ndarray | None = None) -> dict[str, float]:
    """KPIs of a portfolio-mode world (slot = debtor). Rates are over debtors that entered
    (and are in ``subset``, a boolean mask over slots, when given)."""
    e = w.status != Status.WAITING
    if subset is not None:
        e = e & subset
    n = int(e.sum())
    if n == 0:
        raise ValueError("no debtor has entered the portfolio yet")
    collected = float(w.collected[e].sum())
    cost = float(w.cost_eur[e].sum())
    contacts = w.contacts_by_channel[e].sum(axis=0)
    resolved = np.isin(w.status[e], (Status.PAID, Status.SETTLED, Status.PLAN_COMPLETED))
    first = w.first_payment_day[e]
    calls_made = int(w.calls_made[e].sum())
    k: dict[str, float] = {
        "debtors": float(n),
        "recovery_rate_amount": collected / float(w.balance[e].sum()),
        "recovery_rate_count": float((first >= 0).mean()),
        "resolution_rate": float(resolved.mean()),
        "net_value_per_debtor": float(w.net_value[e].mean()),
        "collected_per_debtor": collected / n,
        "contact_cost_per_debtor": cost / n,
        "cost_to_collect": cost / collected if collected > 0 else float("nan"),
    }
    for i, c in enumerate(CONTACT_CHANNEL_NAMES):
        k[f"contacts_per_debtor_{c}"] = float(contacts[i]) / n
    k["contacts_per_debtor"] = float(contacts.sum()) / n
    k["firm_contacts_per_debtor"] = float(w.firm_contacts[e].sum()) / n
    k["rpc_rate"] = float(w.rpc[e].sum()) / calls_made if calls_made else float("nan")
    k["complaint_rate"] = float((w.complaints[e] > 0).mean())
    k["opt_out_rate"] = float((w.opt_outs[e] > 0).mean())
    k["churn_rate"] = float(w.churned[e][resolved].mean()) if resolved.any() else float("nan")
    k["blocked_actions"] = float(w.blocked_count[e].sum())
    k["capacity_dropped_calls"] = float(w.calls_dropped[e].sum())
    k["median_days_to_first_payment"] = float(np.median(first[first >= 0])) if (first >= 0).any() else float("nan")
    return k


def funnel_rates(w: World) -> dict[str, float]:
    """Per channel: open (noticed / delivered) and response (engaged / delivered) rates."""
    out: dict[str, float] = {}
    f = w.funnel
    for i, c in enumerate(CONTACT_CHANNEL_NAMES):
        dl = float(f["delivered"][i])
        out[f"{c}_sent"] = float(f["sent"][i])
        out[f"{c}_open_rate"] = float(f["noticed"][i]) / dl if dl else float("nan")
        out[f"{c}_response_rate"] = float(f["engaged"][i]) / dl if dl else float("nan")
    return out


def blocked_by_reason(w: World) -> dict[str, int]:
    return {BLOCK_NAMES[i]: int(v) for i, v in enumerate(w.blocked_by_reason) if i > 0}


def per_debtor(w: World) -> dict[str, np.ndarray]:
    """Per-debtor outcome columns (for confidence intervals and breakdowns)."""
    e = w.status != Status.WAITING
    assert w.traits is not None
    return {
        "debtor": w.debtor_id[e].astype(np.int64),
        "archetype": w.traits.archetype[e].astype(np.int64),
        "balance_eur": w.balance[e],
        "collected_eur": w.collected[e],
        "net_value_eur": w.net_value[e],
        "contact_cost_eur": w.cost_eur[e],
        "paid_any": w.first_payment_day[e] >= 0,
        "complained": w.complaints[e] > 0,
        "opted_out": w.opt_outs[e] > 0,
        "status": w.status[e].astype(np.int64),
    }


def recovery_curve(w: World) -> np.ndarray:
    """Cumulative share of the entered balance collected, by days in collections (0..horizon)."""
    e = w.status != Status.WAITING
    return np.cumsum(w.recovery_by_day) / float(w.balance[e].sum())

"""The fit's check: the history against the fitted world replaying it (``calibrate fit``'s report).

The fitted world replays the history's own contacts (``experiments.calibrate.replay``) a few times
with other seeds; every figure (recovery by month in collections, response by channel and by
window, days to the first payment, promise keeping, complaints and opt-outs per contact) is
computed the same way on the history and on the pooled replays, each with a 95 % interval
clustered by account, and gets a verdict: *agrees* when the gap is within 1.96 standard errors of
the gap, else *differs*. A replay gives every account the contacts the history gave it, also after
the replayed debtor resolved or reacted otherwise (see ``experiments.calibrate``), so figures of
later contacts may differ even in a well-fitted world; the verdicts say where to look.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.calibrate import Z95, Fit, Ranking, Statistic, fit_summary, replay, replay_population, world_history
from experiments.io import write_json
from experiments.plots import plt
from experiments.whatif_report import render_html
from policies.fileio import atomic_write
from policies.schema import CONTACT_CHANNEL_NAMES, WINDOW_NAMES
from sim import history as fmt
from sim.config import Scenario
from sim.runner import run_portfolio
from sim.world import World

if TYPE_CHECKING:
    from policies.base import Policy

MONTH_DAYS = 30
MONTHS = 6
_OUT = {name: i for i, name in enumerate(fmt.CONTACT_OUTCOMES)}
_EV = {name: i for i, name in enumerate(fmt.EVENT_KINDS)}


def figures(h: fmt.History) -> dict[str, Statistic]:
    """The report's figures of a history, each clustered by account (name -> :class:`Statistic`)."""
    n = h.n_accounts
    a, c, p = h.accounts, h.contacts, h.payments
    balance = a["balance_eur"].astype(np.float64)
    pacc = p["account"].astype(np.int64)
    since = p["day"].astype(np.int64) - a["entry_day"].astype(np.int64)[pacc]
    out: dict[str, Statistic] = {}
    for m in range(1, MONTHS + 1):
        paid = np.bincount(pacc[since < m * MONTH_DAYS], weights=p["amount_eur"][since < m * MONTH_DAYS], minlength=n)
        out[f"recovery by month {m} (share of balance)"] = Statistic(paid, balance)
    cacc = c["account"].astype(np.int64)
    delivered = c["delivered"].astype(bool)
    engaged = c["outcome"].astype(np.int64) >= _OUT["engaged"]

    def share(name: str, success: np.ndarray, among: np.ndarray) -> None:
        out[name] = Statistic(np.bincount(cacc[among & success], minlength=n).astype(float), np.bincount(cacc[among], minlength=n).astype(float))

    for k, ch in enumerate(CONTACT_CHANNEL_NAMES):
        share(f"response {ch} (engaged / delivered)", engaged, delivered & (c["channel"] == k))
    for k, w in enumerate(WINDOW_NAMES):
        share(f"response {w} window (engaged / delivered)", engaged, delivered & (c["window"] == k))
    first = np.full(n, -1, dtype=np.int64)
    order = np.argsort(p["day"], kind="stable")[::-1]
    first[pacc[order]] = since[order]  # the last write is the earliest payment
    payers = first >= 0
    out["days to the first payment (payers)"] = Statistic(np.where(payers, first, 0).astype(float), payers.astype(float), kind="rate")
    if h.events is not None:
        eacc, ev = h.events["account"].astype(np.int64), h.events["event"].astype(np.int64)
        kept, broken = ev == _EV["promise_kept"], ev == _EV["promise_broken"]
        out["promise keeping (kept / due)"] = Statistic(
            np.bincount(eacc[kept], minlength=n).astype(float), np.bincount(eacc[kept | broken], minlength=n).astype(float)
        )
    sent = np.ones(len(cacc), dtype=bool)
    share("complaints per contact", c["outcome"] == _OUT["complaint"], sent)
    share("opt-outs per contact", c["outcome"] == _OUT["opt_out"], sent)
    return out


def _pool(parts: list[dict[str, Statistic]]) -> dict[str, Statistic]:
    return {
        k: Statistic(np.concatenate([p[k].success for p in parts]), np.concatenate([p[k].trials for p in parts]), parts[0][k].kind)
        for k in parts[0]
        if all(k in p for p in parts)
    }


def _run(sc: Scenario, h: fmt.History, seed: int, logging: Policy | None) -> World:
    if logging is None:
        return replay(sc, h, seed)
    return run_portfolio(sc, logging, h.n_accounts, seed, record_events=True, max_days=h.days, population=replay_population(sc, h, seed))


def compare(
    h: fmt.History, sc: Scenario, seed: int = 100, replays: int = 3, logging: Policy | None = None
) -> tuple[list[dict[str, Any]], dict[str, Statistic], dict[str, Statistic]]:
    """Each figure on the history and on ``replays`` simulations in ``sc`` (replays, or runs of ``logging``): values, intervals, verdicts."""
    observed = figures(h)
    simulated = _pool([figures(world_history(_run(sc, h, seed + r, logging))) for r in range(replays)])
    rows = []
    for name, ob in observed.items():
        si = simulated.get(name)
        if si is None or ob.n <= 0 or si.n <= 0:
            continue
        gap = ob.value - si.value
        se = math.hypot(ob.se, si.se)
        agrees = abs(gap) <= Z95 * se if se > 0 else gap == 0
        rows.append(
            {
                "figure": name,
                "history": ob.value,
                "history_low": ob.value - Z95 * ob.se,
                "history_high": ob.value + Z95 * ob.se,
                "fitted": si.value,
                "fitted_low": si.value - Z95 * si.se,
                "fitted_high": si.value + Z95 * si.se,
                "gap": gap,
                "verdict": "agrees" if agrees else ("differs: history higher" if gap > 0 else "differs: history lower"),
            }
        )
    return rows, observed, simulated


def _plot_pairs(rows: list[dict[str, Any]], names: list[str], labels: list[str], path: Path, title: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    by = {r["figure"]: r for r in rows}
    x = np.arange(len(names))
    for off, (key, label, colour) in enumerate((("history", "history", "#444"), ("fitted", "fitted world (replay)", "#1f77b4"))):
        v = np.array([100 * by[n][key] if n in by else np.nan for n in names])
        lo = np.array([100 * by[n][f"{key}_low"] if n in by else np.nan for n in names])
        hi = np.array([100 * by[n][f"{key}_high"] if n in by else np.nan for n in names])
        ax.bar(x + (off - 0.5) * 0.38, v, 0.38, yerr=[v - lo, hi - v], label=label, color=colour, capsize=3)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out


def _fmt(name: str, v: float) -> str:
    return f"{v:.1f}" if name.startswith("days") else f"{100 * v:.2f} %"


def write_report(
    f: Fit,
    h: fmt.History,
    sc: Scenario,
    folder: str | Path,
    scenario_path: str | Path,
    seed: int = 100,
    replays: int = 3,
    logging: Policy | None = None,
) -> list[Path]:
    """report.md, report.html (self-contained), figures and check.json in ``folder``, each written atomically.
    ``logging``: the policy that produced the history, when known: the fitted world then runs it (closed loop)
    instead of replaying the logged contacts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, _, _ = compare(h, sc, seed, replays, logging)
    how = "replaying the history's own contacts" if logging is None else f"running the history's logging policy `{logging.policy_id}`"
    months = [f"recovery by month {m} (share of balance)" for m in range(1, MONTHS + 1)]
    figs = [
        _plot_pairs(
            rows, months, [str(m) for m in range(1, MONTHS + 1)], folder / "recovery_by_month.png", "Recovery by month in collections", "% of balance"
        ),
        _plot_pairs(
            rows,
            [f"response {c} (engaged / delivered)" for c in CONTACT_CHANNEL_NAMES],
            list(CONTACT_CHANNEL_NAMES),
            folder / "response_by_channel.png",
            "Response by channel",
            "engaged, % of delivered",
        ),
        _plot_pairs(
            rows,
            [f"response {w} window (engaged / delivered)" for w in WINDOW_NAMES],
            list(WINDOW_NAMES),
            folder / "response_by_window.png",
            "Response by window",
            "engaged, % of delivered",
        ),
    ]
    agree = sum(r["verdict"] == "agrees" for r in rows)
    md = [
        f"# Calibration report: {Path(scenario_path).name}",
        "",
        f"History `{f.history}`: {f.accounts:,} accounts over {f.days} days. Fitted scenario `{scenario_path}` extends `{f.base}`; "
        f"fit in {f.seconds:.0f} s ({f.replays} simulations).",
        "",
        f"**{agree} of {len(rows)} figures agree** between the history and the fitted world {how} on the history's accounts "
        f"({replays} replays pooled, seeds {seed}..{seed + replays - 1}). Intervals are 95 %, clustered by account; a figure agrees when "
        "the gap is within 1.96 standard errors of the gap.",
        "",
        "| figure | history | 95 % interval | fitted world | 95 % interval | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        n = r["figure"]
        md.append(
            f"| {n} | {_fmt(n, r['history'])} | {_fmt(n, r['history_low'])} - {_fmt(n, r['history_high'])} | {_fmt(n, r['fitted'])} | "
            f"{_fmt(n, r['fitted_low'])} - {_fmt(n, r['fitted_high'])} | {r['verdict']} |"
        )
    md += ["", "## Fitted values", "", "| key | fitted | 95 % interval | base | how |", "|---|---:|---:|---:|---|"]
    for e in f.estimates():
        md.append(f"| `{e.key}` | {e.value:.4g} | {e.low:.4g} - {e.high:.4g} | {e.base:.4g} | {e.method} |")
    md += ["", "## Not identifiable from this history (kept at the base value)", ""]
    md += [f"- `{k}`: {w}" for k, w in f.not_identified]
    md += ["", "## Figures", ""]
    for p in figs:
        title = p.stem.replace("_", " ").capitalize()
        md += [f"### {title}", "", f"![{title}]({p.name})", "", "Bars: history and fitted world; whiskers: 95 % intervals.", ""]
    text = "\n".join(md) + "\n"
    page = render_html(text, f"Calibration report: {Path(scenario_path).name}", folder)
    atomic_write(folder / "report.md", lambda p: p.write_text(text))
    atomic_write(folder / "report.html", lambda p: p.write_text(page))
    write_json(folder / "check.json", {"figures": rows, "agree": agree, "figures_compared": len(rows)})
    write_json(folder / FIT_JSON, fit_summary(f))  # the estimates and their intervals, for `calibrate rank`
    return [folder / "report.md", folder / "report.html", folder / "check.json", folder / FIT_JSON, *figs]


FIT_JSON = "fit.json"


# ------------------------------------------------------------------ calibrate rank: policies under the fit's uncertainty


def ranking_json(rk: Ranking, scenario: str, draws: int) -> dict[str, Any]:
    order = sorted(rk.values, key=rk.values.__getitem__, reverse=True)
    return {
        "scenario": scenario,
        "debtors": rk.debtors,
        "seed": rk.seed,
        "draws": draws,
        "policies": [{"policy": p, "value": rk.values[p], "fit_half_width": rk.half_width(p), "drawn": rk.drawn[p]} for p in order],
        "pairs": rk.pairs(),
    }


def format_ranking(r: dict[str, Any]) -> str:
    """The ranking as Markdown: each policy's value with the fit's 95 % half-width, then every pair's verdict."""
    lines = [
        f"# Policies ranked on {r['scenario']} under the fit's uncertainty",
        "",
        f"Net value per debtor ({r['debtors']:,} debtors, seed {r['seed']}) on the fitted world and on {r['draws']} worlds drawn from "
        "its 95 % intervals, every world with the same debtors and luck. A pair is ordered when its difference on the fitted "
        "world exceeds its 95 % half-width (Student's t times the difference's root mean square deviation over the drawn worlds "
        "from the fitted world's, and 1.96 standard errors of the evaluation's per-debtor differences, in quadrature); otherwise "
        "this history cannot tell the two apart.",
        "",
        "| policy | net value per debtor (EUR) | +- from the fit (95 %) |",
        "|---|---:|---:|",
        *(f"| `{p['policy']}` | {p['value']:.2f} | {p['fit_half_width']:.2f} |" for p in r["policies"]),
        "",
        "| ahead | behind | difference (EUR) | 95 % half-width | ahead in drawn worlds | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    for q in sorted(r["pairs"], key=lambda q: -q["difference"]):
        verdict = "ordered" if q["ordered"] else "cannot tell"
        lines.append(
            f"| `{q['ahead']}` | `{q['behind']}` | {q['difference']:+.2f} | {q['half_width']:.2f} | "
            f"{q['ahead_in_draws']} of {q['draws']} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _plot_ranking(r: dict[str, Any], path: Path) -> Path:
    pol = r["policies"][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(pol) + 1.6), dpi=110)
    for i, p in enumerate(pol):
        ax.scatter(p["drawn"], np.full(len(p["drawn"]), i), s=14, color="#9ecae1", zorder=2, label="drawn worlds" if i == 0 else None)
        ax.errorbar(p["value"], i, xerr=p["fit_half_width"], fmt="o", color="#08519c", capsize=3, zorder=3, label="fitted world" if i == 0 else None)
    ax.set_yticks(np.arange(len(pol)), [p["policy"] for p in pol])
    ax.set_xlabel("net value per debtor (EUR)")
    ax.set_title("Policies on the fitted world and on worlds drawn from its intervals")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out


def write_ranking(r: dict[str, Any], folder: str | Path) -> list[Path]:
    """rank.md (with its figure), rank.png and rank.json in ``folder``, each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig = _plot_ranking(r, folder / "rank.png")
    text = format_ranking(r) + f"\n![Policies under the fit's uncertainty]({fig.name})\n"
    return [atomic_write(folder / "rank.md", lambda p: p.write_text(text)), fig, write_json(folder / "rank.json", r)]

"""Rendering an evaluation: terminal table, Markdown report, CSV, JSON and figures."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from experiments import stats
from experiments.evaluate import Evaluation, Interval
from experiments.io import atomic_write, write_json
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.config import ARCHETYPES
from sim.kpis import KPIS

# the KPIs shown in the terminal (all are in the files)
HEADLINE = (
    "net_value_per_debtor",
    "recovery_rate_amount",
    "recovery_rate_count",
    "contact_cost_per_debtor",
    "cost_to_collect",
    "contacts_per_debtor",
    "rpc_rate",
    "complaint_rate",
    "opt_out_rate",
    "blocked_actions",
    "capacity_dropped_calls",
    "median_days_to_first_payment",
)
_SPEC = {k.name: k for k in KPIS}


def _fmt(v: float, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _ci(iv: Interval, fmt: str) -> str:
    return stats.format_interval(iv, fmt)


def terminal_table(ev: Evaluation) -> str:
    names = ev.policies
    rows = [("policy", *names)]
    score_row = ["normalised score (0 ladder, 1 oracle)"]
    for p in names:
        s = ev.results[p].score
        score_row.append(_ci(s, ".3f") if s else "n/a")
    rows.append(tuple(score_row))
    for k in HEADLINE:
        spec = _SPEC[k]
        rows.append((spec.label, *(_ci(ev.results[p].kpis[k], spec.fmt) for p in names)))
    w0 = max(len(r[0]) for r in rows) + 2
    ws = [max(len(r[i]) for r in rows) + 2 for i in range(1, len(rows[0]))]
    lines = [r[0].ljust(w0) + "".join(c.rjust(w) for c, w in zip(r[1:], ws, strict=True)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = [
        f"scenario {ev.scenario} | profile {ev.profile} | {ev.debtors:,} debtors x {len(ev.seeds)} seeds | common random numbers",
        "",
        *lines,
        "",
        stats.method_note(len(ev.seeds)),
        *_source_notes(ev, code=False),
    ]
    if ev.paired:
        out += ["", f"paired difference of net value per debtor vs champion '{ev.champion}' (EUR):"]
        for p, d in ev.paired.items():
            sig = "significant" if d.diff.significant else "not significant"
            out.append(
                f"  {p:<20} {d.diff.mean:+9.2f}  95 % CI [{d.diff.low:+.2f}, {d.diff.high:+.2f}]  p = {stats.format_p(d.p_value)} ({sig}); "
                f"unpaired CI would be ±{d.unpaired.half_width:.2f}"
            )
        out += ["", stats.method_note(len(ev.seeds), paired=True)]
    return "\n".join(out)


def _source_notes(ev: Evaluation, code: bool = True) -> list[str]:
    """The full id behind each short policy label (a footnote); ``code`` marks them as Markdown code spans."""
    if not ev.sources:
        return []
    q = "`" if code else ""
    return ["Policies: " + "; ".join(f"{q}{label}{q} = {q}{src}{q}" for label, src in ev.sources.items()) + "."]


def kpis_csv(ev: Evaluation) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["scenario", "policy", "metric", "mean", "ci_low", "ci_high", "replicates"])
    for p in ev.policies:
        r = ev.results[p]
        if r.score:
            w.writerow([ev.scenario, p, "normalised_score", r.score.mean, r.score.low, r.score.high, r.score.replicates])
        for k, iv in r.kpis.items():
            w.writerow([ev.scenario, p, k, iv.mean, iv.low, iv.high, iv.replicates])
        if p in ev.paired:
            d = ev.paired[p]
            w.writerow([ev.scenario, p, f"net_value_diff_vs_{ev.champion}", d.diff.mean, d.diff.low, d.diff.high, d.diff.replicates])
    return buf.getvalue()


def markdown(ev: Evaluation, figures: list[str]) -> str:
    names = ev.policies
    lines = [
        f"# Evaluation: scenario `{ev.scenario}`",
        "",
        f"{ev.debtors:,} debtors x {len(ev.seeds)} seeds ({', '.join(map(str, ev.seeds))}), compliance profile `{ev.profile}`. "
        "Every policy faced the same debtors and the same luck for a given seed (common random numbers).",
        "",
        "## Summary",
        "",
        "| KPI | " + " | ".join(f"`{p}`" for p in names) + " |",
        "|---|" + "---|" * len(names),
        "| normalised score (0 = static ladder, 1 = oracle) | "
        + " | ".join(_ci(s, ".3f") if (s := ev.results[p].score) else "n/a" for p in names)
        + " |",
    ]
    for k in KPIS:
        lines.append(f"| {k.label} | " + " | ".join(_ci(ev.results[p].kpis[k.name], k.fmt) for p in names) + " |")
    lines += ["", stats.method_note(len(ev.seeds)) + " The normalised score: the delta method over the paired batch values.", *_source_notes(ev)]
    if ev.paired:
        lines += [
            "",
            f"## Against the champion `{ev.champion}`",
            "",
            "Paired difference of net value per debtor (EUR); the unpaired interval on the same runs shows what pairing buys.",
            "",
            "| challenger | difference | 95 % CI (paired) | p-value | 95 % CI (unpaired) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for p, d in ev.paired.items():
            verdict = ("better" if d.diff.mean > 0 else "worse") if d.diff.significant else "no significant difference"
            pv = stats.format_p(d.p_value)
            lines.append(
                f"| `{p}` | {d.diff.mean:+.2f} | [{d.diff.low:+.2f}, {d.diff.high:+.2f}] | {pv} "
                f"| [{d.unpaired.low:+.2f}, {d.unpaired.high:+.2f}] | {verdict} |"
            )
        lines += ["", stats.method_note(len(ev.seeds), paired=True) + " The unpaired interval: Welch, on the same batch means."]
    lines += ["", "## Compliance", "", "| policy | blocked actions | by reason |", "|---|---|---|"]
    for p in names:
        r = ev.results[p]
        reasons = ", ".join(f"{k} {v:,}" for k, v in r.blocked_by_reason.items() if v) or "none"
        lines.append(f"| `{p}` | {r.kpis['blocked_actions'].mean:,.0f} | {reasons} |")
    lines += [
        "",
        "## Net value per debtor by archetype (EUR)",
        "",
        "| archetype | " + " | ".join(f"`{p}`" for p in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for a in ARCHETYPES:
        lines.append(
            f"| {a} | " + " | ".join(_ci(ev.results[p].by_archetype[a], ",.0f") if a in ev.results[p].by_archetype else "n/a" for p in names) + " |"
        )
    lines += ["", stats.method_note(len(ev.seeds)).split(";")[0] + ", within each archetype."]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    return "\n".join(lines) + "\n"


def figures(ev: Evaluation, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ev.policies
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(names)}
    made: list[str] = []

    def save(fig, name: str) -> None:  # type: ignore[no-untyped-def]
        path = out / name
        fig.tight_layout()
        atomic_write(path, lambda p: fig.savefig(p, format="png"))
        plt.close(fig)
        made.append(str(path))

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for p in names:
        c = ev.results[p].curve
        ax.plot(np.arange(len(c)), 100 * c, label=p, lw=2, color=colors[p])
    ax.set(xlabel="days in collections", ylabel="collected, % of balance", title=f"{ev.scenario}: recovery by day")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "recovery_by_day.png")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for p in names:
        k = ev.results[p].kpis
        x, y = k["contact_cost_per_debtor"], k["recovery_rate_amount"]
        ax.errorbar(x.mean, 100 * y.mean, xerr=_err(x), yerr=_err(y, 100), fmt="o", capsize=4, color=colors[p], label=p)
    ax.set(xlabel="contact cost per debtor (EUR)", ylabel="recovery by amount (%)", title=f"{ev.scenario}: cost vs recovery (95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the plot, never over it
    save(fig, "cost_vs_recovery.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    bottom = np.zeros(len(names))
    for i, channel in enumerate(CONTACT_CHANNEL_NAMES):
        vals = np.array([ev.results[p].channel_mix[channel] for p in names])
        ax.bar(names, vals, bottom=bottom, label=channel, color=plt.get_cmap("Set2")(i))
        bottom += vals
    ax.set(ylabel="contacts per debtor", title=f"{ev.scenario}: channel mix")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the plot, never over it
    ax.tick_params(axis="x", labelrotation=20)
    save(fig, "channel_mix.png")

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    width = 0.8 / len(names)
    xs = np.arange(len(ARCHETYPES))
    for j, p in enumerate(names):
        arch = ev.results[p].by_archetype
        means = [arch[a].mean if a in arch else np.nan for a in ARCHETYPES]
        errs = [arch[a].half_width if a in arch else 0 for a in ARCHETYPES]
        ax.bar(xs + j * width, means, width, yerr=errs, capsize=2, label=p, color=colors[p])
    ax.set_xticks(xs + 0.4 - width / 2, [a.replace("_", " ") for a in ARCHETYPES])
    ax.set(ylabel="net value per debtor (EUR)", title=f"{ev.scenario}: what each policy does for whom")
    ax.axhline(0, color="black", lw=0.8)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(names), 6), frameon=False)
    save(fig, "net_value_by_archetype.png")
    return made


def _err(iv: Interval, scale: float = 1.0) -> np.ndarray:
    """Matplotlib's (2, 1) error-bar array: below and above the mean (a rate's interval is not symmetric)."""
    if math.isnan(iv.low):
        return np.zeros((2, 1))
    return np.array([[iv.mean - iv.low], [iv.high - iv.mean]]) * scale


def write_all(ev: Evaluation, out: Path) -> list[str]:
    """report.md, kpis.csv, kpis.json and the figures in ``out`` (each written atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(ev, out)
    atomic_write(out / "kpis.csv", lambda p: p.write_text(kpis_csv(ev)))
    write_json(out / "kpis.json", ev.to_json())
    atomic_write(out / "report.md", lambda p: p.write_text(markdown(ev, figs)))
    return [str(out / f) for f in ("report.md", "kpis.csv", "kpis.json")] + figs

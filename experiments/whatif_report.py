"""The what-if report: KPIs by variant with confidence intervals, deltas against the base, figures,
and a plain-language summary of which differences are statistically significant."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from experiments.evaluate import Z95, p_value_two_sided, t975
from experiments.whatif import Cell, Spec, load_results
from policies.fileio import atomic_write
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.kpis import KPIS

_SPEC = {k.name: k for k in KPIS}


def _t_interval(values: list[float]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)])
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), t975(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def analyse(out: Path) -> dict[str, Any]:
    spec, res, nets = load_results(out)
    base = spec.base
    table: dict[str, Any] = {"question": spec.question, "scenario": spec.scenario, "base": base, "variants": {}, "missing": []}
    for v in spec.variants:
        for p in spec.policy_labels:
            keys = [Cell(v, p, s).key for s in range(spec.seeds)]
            have = [k for k in keys if k in res]
            table["missing"] += [k for k in keys if k not in res]
            if not have:
                continue
            row: dict[str, Any] = {"kpis": {}, "delta": {}, "curve": np.mean([res[k]["curve"] for k in have], axis=0).tolist()}
            for kpi in {*spec.kpis, "contact_cost_per_debtor", "recovery_rate_amount", *(f"contacts_per_debtor_{c}" for c in CONTACT_CHANNEL_NAMES)}:
                row["kpis"][kpi] = _t_interval([res[k]["kpis"][kpi] for k in have])
            if v != base:
                pairs = [(Cell(v, p, s).key, Cell(base, p, s).key) for s in range(spec.seeds)]
                pairs = [(a, b) for a, b in pairs if a in res and b in res]
                if pairs:
                    d = np.concatenate([nets[a] - nets[b] for a, b in pairs])
                    se = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
                    p_val = p_value_two_sided(float(d.mean()) / se) if se > 0 else 1.0
                    row["net_value_diff"] = {"mean": float(d.mean()), "half_width": Z95 * se, "p_value": p_val, "pairs": len(d)}
                    for kpi in spec.kpis:
                        row["delta"][kpi] = _t_interval([res[a]["kpis"][kpi] - res[b]["kpis"][kpi] for a, b in pairs])
            table["variants"].setdefault(v, {})[p] = row
    table["summary"] = summary(spec, table)
    return table


def _fmt(kpi: str, v: float) -> str:
    spec = _SPEC.get(kpi)
    return "n/a" if v is None or not math.isfinite(v) else format(v, spec.fmt if spec else ".3g")


def summary(spec: Spec, table: dict[str, Any]) -> list[str]:
    lines = []
    for v, by_policy in table["variants"].items():
        if v == spec.base:
            continue
        for p, row in by_policy.items():
            d = row.get("net_value_diff")
            if d is None:
                continue
            if d["mean"] == 0 and d["half_width"] == 0:
                lines.append(
                    f"Under `{p}`, `{v}` changes nothing: every debtor ends with the same net value as under `{spec.base}` (the change never binds)."
                )
                continue
            sig = d["p_value"] < 0.05
            direction = "raises" if d["mean"] > 0 else "lowers"
            pv = f"p = {d['p_value']:.2g}"
            verdict = f"significant ({pv})" if sig else f"not statistically significant ({pv}); the data cannot tell it from no change"
            lines.append(
                f"Under `{p}`, `{v}` {direction} net value per debtor by {abs(d['mean']):.2f} EUR "
                f"(95 % CI {d['mean'] - d['half_width']:+.2f} to {d['mean'] + d['half_width']:+.2f}) against `{spec.base}`: {verdict}."
            )
            for kpi, (m, hw) in row["delta"].items():
                if kpi == "net_value_per_debtor" or not math.isfinite(hw) or abs(m) <= hw:
                    continue
                label = _SPEC[kpi].label if kpi in _SPEC else kpi
                lines.append(f"  - {label} changes by {_fmt(kpi, m)} (+- {_fmt(kpi, hw)}), beyond its 95 % interval.")
    return lines


def figures(spec: Spec, table: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.plotting import finish_png

    made = []
    variants = list(table["variants"])
    pols = spec.policy_labels
    k = len(spec.kpis)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.8), dpi=110, squeeze=False)
    width = 0.8 / max(len(pols), 1)
    for j, kpi in enumerate(spec.kpis):
        ax = axes[0, j]
        for i, p in enumerate(pols):
            m = [table["variants"][v].get(p, {}).get("kpis", {}).get(kpi, (np.nan, np.nan)) for v in variants]
            err = [0 if not math.isfinite(x[1]) else x[1] for x in m]
            ax.bar(np.arange(len(variants)) + i * width, [x[0] for x in m], width, yerr=err, capsize=3, label=p)
        ax.set_xticks(np.arange(len(variants)) + 0.4 - width / 2, variants, rotation=20)
        ax.set_title(_SPEC[kpi].label if kpi in _SPEC else kpi, fontsize=9)
    made.append(finish_png(fig, axes[0, 0], out / "kpis_by_variant.png", "best"))

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for v in variants:
        for p in pols:
            row = table["variants"][v].get(p)
            if row:
                ax.plot(100 * np.array(row["curve"]), label=f"{v} / {p}", lw=1.6)
    ax.set(xlabel="days in collections", ylabel="collected, % of balance", title="recovery curves")
    made.append(finish_png(fig, ax, out / "recovery_curves.png", "lower right"))

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    labels = [f"{v}\n{p}" for v in variants for p in pols if p in table["variants"][v]]
    bottom = np.zeros(len(labels))
    for ci, c in enumerate(CONTACT_CHANNEL_NAMES):
        vals = np.array([table["variants"][v][p]["kpis"][f"contacts_per_debtor_{c}"][0] for v in variants for p in pols if p in table["variants"][v]])
        ax.bar(labels, vals, bottom=bottom, label=c, color=plt.get_cmap("Set2")(ci))
        bottom += vals
    ax.set(ylabel="contacts per debtor", title="channel mix by variant")
    ax.tick_params(axis="x", labelsize=7)
    made.append(finish_png(fig, ax, out / "channel_mix.png", "upper right"))

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for v in variants:
        for p in pols:
            row = table["variants"][v].get(p)
            if row:
                (x, xe), (y, ye) = row["kpis"]["contact_cost_per_debtor"], row["kpis"]["recovery_rate_amount"]
                xerr = 0 if not math.isfinite(xe) else xe
                yerr = 0 if not math.isfinite(ye) else 100 * ye
                ax.errorbar(x, 100 * y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=f"{v} / {p}")
    ax.set(xlabel="contact cost per debtor (EUR)", ylabel="recovery by amount (%)", title="cost / recovery frontier")
    made.append(finish_png(fig, ax, out / "cost_recovery.png", "lower right"))
    return made


def write_report(out: Path) -> list[Path]:
    spec, _, _ = load_results(out)
    table = analyse(out)
    figs = figures(spec, table, out)
    variants = list(table["variants"])
    intro = f"Scenario `{spec.scenario}`, {spec.debtors:,} debtors x {spec.seeds} seeds per cell, common random numbers; base variant `{spec.base}`."
    md = [f"# {spec.question}", "", intro, ""]
    for v in spec.variants:
        changes = ", ".join(f"`{k}` = {val}" for k, val in (spec.variants[v] or {}).items()) or "the base scenario"
        md.append(f"- `{v}`: {changes}")
    md.insert(4, "## Variants")
    md.insert(5, "")
    md += ["", "## What is significant", ""] + (table["summary"] or ["(no variant besides the base)"])
    header = "| variant | policy | " + " | ".join(_SPEC[k].label for k in spec.kpis) + " |"
    md += ["", "## KPIs (95 % CI over seeds)", "", header, "|---|---|" + "---|" * len(spec.kpis)]
    for v in variants:
        for p, row in table["variants"][v].items():
            md.append(f"| `{v}` | `{p}` | " + " | ".join(f"{_fmt(k, row['kpis'][k][0])} ± {_fmt(k, row['kpis'][k][1])}" for k in spec.kpis) + " |")
    md += [
        "",
        f"## Deltas against `{spec.base}` (same policy and seeds; 95 % CI)",
        "",
        header.replace("| variant |", "| variant |"),
        "|---|---|" + "---|" * len(spec.kpis),
    ]
    for v in variants:
        if v == spec.base:
            continue
        for p, row in table["variants"][v].items():
            cells_ = []
            for k in spec.kpis:
                m, hw = row["delta"].get(k, (float("nan"), float("nan")))
                sign = "+" if math.isfinite(m) and m > 0 else ""
                cells_.append(f"{sign}{_fmt(k, m)} ± {_fmt(k, hw)}")
            md.append(f"| `{v}` | `{p}` | " + " | ".join(cells_) + " |")
    if table["missing"]:
        md += ["", f"**Missing cells** (failed or not run yet; run the experiment again to retry): {', '.join(table['missing'])}"]
    md += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figs]
    atomic_write(out / "report.md", lambda p: p.write_text("\n".join(md) + "\n"))

    body: list[str] = []
    in_table = False
    for line in md:
        is_row = line.startswith("|")
        if is_row and not in_table:
            body.append("<table>")
            in_table = True
        elif not is_row and in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            data = base64.b64encode((out / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}" style="max-width:100%">')
        elif is_row:
            if set(line) <= set("|-"):
                continue
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    page = "\n".join(body)
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td{border:1px solid #ccc;padding:3px 8px}table{border-collapse:collapse}"
    head = f"<meta charset='utf-8'><title>{html.escape(spec.question)}</title><style>{style}</style>"
    doc = f"<!doctype html><html><head>{head}</head><body>{page}</body></html>"
    atomic_write(out / "report.html", lambda p: p.write_text(doc))
    import json

    keep = {k: table[k] for k in ("question", "scenario", "base", "summary", "missing")}
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(keep, indent=2)))
    return [out / "report.md", out / "report.html", *figs]

"""The what-if report: KPIs by variant with confidence intervals, deltas against the base, a
sensitivity (tornado) chart, figures, and a plain-language summary of which differences are
statistically significant.

Every interval comes from ``experiments.stats`` (batch means over seeds x debtor batches; deltas
paired per debtor), so the summary and the tables quote one interval per number. Policies appear
under their short labels (``experiments.labels``), with the full ids listed under the tables.
The Markdown is the source; the HTML is rendered from it by markdown-it-py (CommonMark with
tables, raw HTML off) with the figures embedded as data URIs, so the page is self-contained.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from experiments import stats
from experiments.io import clean_json
from experiments.whatif import Cell, Spec, TrainPolicy, load_results
from policies.fileio import atomic_write
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.config import ConfigError
from sim.kpis import KPIS

_SPEC = {k.name: k for k in KPIS}
NET = "net_value_per_debtor"
FIGURE_DPI = 110


def _label(kpi: str) -> str:
    return _SPEC[kpi].label if kpi in _SPEC else kpi


def _fmt(kpi: str) -> str:
    return _SPEC[kpi].fmt if kpi in _SPEC else ".3g"


def shown_kpis(spec: Spec) -> list[str]:
    """The KPIs of the tables: net value first (the summary speaks of it), then the spec's."""
    return [NET, *(k for k in spec.kpis if k != NET)]


def changed_levers(spec: Spec, variant: str) -> dict[str, Any]:
    """The overrides in which ``variant`` differs from the base variant."""
    base, mine = spec.variants[spec.base] or {}, spec.variants[variant] or {}
    out = {k: v for k, v in mine.items() if base.get(k) != v}
    out |= {k: "(scenario value)" for k in base if k not in mine}
    return out


def one_at_a_time(spec: Spec) -> bool:
    """Every variant besides the base changes exactly one lever (the design a tornado chart reads)."""
    others = [v for v in spec.variants if v != spec.base]
    return bool(others) and all(len(changed_levers(spec, v)) == 1 for v in others)


def analyse(out: Path) -> dict[str, Any]:
    """KPI intervals per (variant, policy) and paired deltas against the base, from the cells on disk."""
    spec, res = load_results(out)
    base = spec.base
    kpis = shown_kpis(spec)
    needed = list(
        dict.fromkeys([*kpis, "contact_cost_per_debtor", "recovery_rate_amount", *(f"contacts_per_debtor_{c}" for c in CONTACT_CHANNEL_NAMES)])
    )
    table: dict[str, Any] = {
        "question": spec.question,
        "scenario": spec.scenario,
        "base": base,
        "seeds": spec.seeds,
        "debtors": spec.debtors,
        "kpis": kpis,
        "variants": {},
        "missing": [],
    }

    def seed_values(keys: list[str], kpi: str) -> list[float]:
        return [float(res[k]["kpis"][kpi]) for k in keys]

    def batch_values(keys: list[str], kpi: str) -> list[list[float]]:
        return [[float(b[kpi]) for b in res[k]["batches"]] for k in keys]

    for v in spec.variants:
        for p in spec.policy_labels:
            keys = [Cell(v, p, s).key for s in range(spec.seeds)]
            have = [k for k in keys if k in res]
            table["missing"] += [k for k in keys if k not in res]
            if not have:
                continue
            units = sum(res[k]["kpis"]["debtors"] for k in have)
            row: dict[str, Any] = {
                "seeds": len(have),
                "kpis": {kpi: stats.kpi_interval(kpi, seed_values(have, kpi), batch_values(have, kpi), units) for kpi in needed},
                "delta": {},
                "curve": np.mean([res[k]["curve"] for k in have], axis=0).tolist(),
            }
            if v != base:
                pairs = [(Cell(v, p, s).key, Cell(base, p, s).key) for s in range(spec.seeds)]
                pairs = [(a, b) for a, b in pairs if a in res and b in res]
                if pairs:
                    mine, theirs = [a for a, _ in pairs], [b for _, b in pairs]
                    for kpi in kpis:
                        scale = float(stats.BATCHES) if kpi in stats.TOTAL_KPIS else 1.0
                        row["delta"][kpi] = stats.paired_difference(
                            seed_values(mine, kpi), seed_values(theirs, kpi), batch_values(mine, kpi), batch_values(theirs, kpi), scale
                        )
            table["variants"].setdefault(v, {})[p] = row
    if not table["variants"]:
        raise ConfigError(
            f"{out} has no finished cells of the current format ({len(table['missing'])} missing or written by an older collectrl); "
            "run `collectrl experiment run` on its spec again to compute them"
        )
    table["summary"] = summary(spec, table)
    return table


def _signed(kpi: str, iv: stats.Interval) -> str:
    return stats.format_interval(iv, _fmt(kpi), signed=True)


def summary(spec: Spec, table: dict[str, Any]) -> list[str]:
    """Plain-language findings, one line per (variant, policy); KPI details as indented sub-lines.

    The intervals are the deltas table's own (the same ``Interval`` objects, formatted the same way)."""
    lines = []
    for v, by_policy in table["variants"].items():
        if v == spec.base:
            continue
        for p, row in by_policy.items():
            d = row["delta"].get(NET)
            if d is None:
                continue
            if d.mean == 0 and d.low == 0 and d.high == 0:
                lines.append(
                    f"Under `{p}`, `{v}` changes nothing: every debtor ends with the same net value as under `{spec.base}` (the change never binds)."
                )
                continue
            direction = "raises" if d.mean > 0 else "lowers"
            pv = f"p = {stats.format_p(d.p_value)}"
            verdict = f"significant ({pv})" if d.significant else f"not statistically significant ({pv}); the data cannot tell it from no change"
            lines.append(f"Under `{p}`, `{v}` {direction} net value per debtor against `{spec.base}`: {_signed(NET, d)} EUR, {verdict}.")
            for kpi, iv in row["delta"].items():
                if kpi == NET or not iv.significant:
                    continue
                lines.append(f"  - {_label(kpi)} changes by {_signed(kpi, iv)}, beyond its 95 % interval.")
    return lines


# ---------------------------------------------------------------------------- figures


def _colors(labels: list[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {p: cmap(i % 10) for i, p in enumerate(labels)}


def _err(ivs: list[stats.Interval], scale: float = 1.0) -> np.ndarray:
    """Matplotlib's (2, n) error array, below and above each mean (rate intervals are not symmetric)."""
    lo = [0.0 if not math.isfinite(iv.low) else iv.mean - iv.low for iv in ivs]
    hi = [0.0 if not math.isfinite(iv.high) else iv.high - iv.mean for iv in ivs]
    return np.array([lo, hi]) * scale


def _scale(kpi: str) -> tuple[float, str]:
    """Percent KPIs are drawn in percent."""
    return (100.0, " (%)") if _fmt(kpi).endswith("%") else (1.0, "")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=FIGURE_DPI))
    plt.close(fig)
    return out


def _legend_above(fig: Any, handles: list[Any], labels: list[str], title: str | None = None) -> None:
    """One legend for the figure, above the plots: it never covers data."""
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 5), fontsize=8, frameon=False, title=title, title_fontsize=8)


def kpi_figure(spec: Spec, table: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    variants, pols = list(table["variants"]), spec.policy_labels
    colors = _colors(pols)
    kpis = table["kpis"]
    cols = 2 if len(kpis) > 1 else 1
    rows = math.ceil(len(kpis) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 0.6 + 3.1 * rows), squeeze=False, layout="constrained")
    width = 0.8 / max(len(pols), 1)
    x = np.arange(len(variants))
    for j, kpi in enumerate(kpis):
        ax = axes[j // cols, j % cols]
        scale, unit = _scale(kpi)
        for i, p in enumerate(pols):
            ivs = [table["variants"][v].get(p, {}).get("kpis", {}).get(kpi, stats.NAN_INTERVAL) for v in variants]
            ax.bar(
                x + (i - (len(pols) - 1) / 2) * width,
                [iv.mean * scale for iv in ivs],
                width,
                yerr=_err(ivs, scale),
                capsize=2,
                color=colors[p],
                label=p,
            )
        ax.set_xticks(x, variants, fontsize=8)
        ax.set_title(_label(kpi) + unit, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.axhline(0, color="black", lw=0.6)
    for j in range(len(kpis), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    _legend_above(fig, handles, labels)
    return _save(fig, path)


def _key_legend(fig: Any, colors: dict[str, Any], variants: list[str], variant_style: dict[str, dict[str, Any]]) -> None:
    """A two-column key beside the plot: colour = policy, line style or marker = variant (one entry each, not one per pair)."""
    from matplotlib.lines import Line2D

    blank = Line2D([], [], alpha=0)
    pols = [Line2D([], [], color=c, lw=2) for c in colors.values()]
    vars_ = [Line2D([], [], color="black", **variant_style[v]) for v in variants]
    rows = max(len(pols), len(vars_))
    handles = [blank, *pols, *[blank] * (rows - len(pols)), blank, *vars_, *[blank] * (rows - len(vars_))]
    labels = ["policy", *colors, *[""] * (rows - len(pols)), "variant", *variants, *[""] * (rows - len(vars_))]
    legend = fig.legend(handles, labels, loc="outside right upper", ncol=2, fontsize=8, frameon=False)
    texts = legend.get_texts()
    for header in (0, rows + 1):
        texts[header].set_fontweight("bold")


def recovery_figure(spec: Spec, table: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    pols, variants = spec.policy_labels, list(table["variants"])
    colors = _colors(pols)
    styles: dict[str, dict[str, Any]] = {v: {"ls": ["-", "--", ":", "-."][i % 4], "lw": 1.6} for i, v in enumerate(variants)}
    fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
    for v in variants:
        for p in pols:
            row = table["variants"][v].get(p)
            if row:
                ax.plot(100 * np.array(row["curve"]), color=colors[p], **styles[v])
    ax.set(xlabel="days in collections", ylabel="collected, % of balance")
    ax.grid(alpha=0.3)
    _key_legend(fig, colors, variants, styles)
    return _save(fig, path)


def channel_figure(spec: Spec, table: dict[str, Any], path: Path) -> Path:
    """Horizontal stacked bars, one row per (variant, policy): long labels stay readable."""
    import matplotlib.pyplot as plt

    rows = [(v, p) for v in table["variants"] for p in spec.policy_labels if p in table["variants"][v]]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.34 * len(rows)), layout="constrained")
    y = np.arange(len(rows))[::-1]
    left = np.zeros(len(rows))
    for ci, c in enumerate(CONTACT_CHANNEL_NAMES):
        vals = np.array([table["variants"][v][p]["kpis"][f"contacts_per_debtor_{c}"].mean for v, p in rows])
        ax.barh(y, vals, left=left, color=plt.get_cmap("Set2")(ci), label=c, height=0.7)
        left += vals
    ax.set_yticks(y, [f"{v} · {p}" for v, p in rows], fontsize=8)
    ax.set_xlabel("contacts per debtor")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=8, frameon=False)
    return _save(fig, path)


def cost_recovery_figure(spec: Spec, table: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    pols, variants = spec.policy_labels, list(table["variants"])
    colors = _colors(pols)
    markers: dict[str, dict[str, Any]] = {v: {"marker": ["o", "s", "^", "D", "v", "P"][i % 6], "ls": "none"} for i, v in enumerate(variants)}
    fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
    for v in variants:
        for p in pols:
            row = table["variants"][v].get(p)
            if row:
                x, y = row["kpis"]["contact_cost_per_debtor"], row["kpis"]["recovery_rate_amount"]
                ax.errorbar(x.mean, 100 * y.mean, xerr=_err([x]), yerr=_err([y], 100), color=colors[p], capsize=3, **markers[v])
    ax.set(xlabel="contact cost per debtor (EUR)", ylabel="recovery by amount (%)")
    ax.grid(alpha=0.3)
    _key_legend(fig, colors, variants, markers)
    return _save(fig, path)


def tornado_order(spec: Spec, table: dict[str, Any]) -> list[str]:
    """The non-base variants, largest change in net value per debtor (any policy) first."""
    sizes = {}
    for v, by_policy in table["variants"].items():
        deltas = [abs(row["delta"][NET].mean) for row in by_policy.values() if NET in row["delta"] and math.isfinite(row["delta"][NET].mean)]
        if v != spec.base and deltas:
            sizes[v] = max(deltas)
    return sorted(sizes, key=lambda v: -sizes[v])


def tornado_figure(spec: Spec, table: dict[str, Any], path: Path) -> Path:
    """Change in net value per debtor against the base, per variant (one lever each) and policy, largest on top."""
    import matplotlib.pyplot as plt

    order = tornado_order(spec, table)
    pols = spec.policy_labels
    colors = _colors(pols)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * len(order) * len(pols)), layout="constrained")
    height = 0.8 / max(len(pols), 1)
    y = np.arange(len(order))[::-1].astype(float)
    for i, p in enumerate(pols):
        ivs = [table["variants"][v].get(p, {}).get("delta", {}).get(NET, stats.NAN_INTERVAL) for v in order]
        offset = ((len(pols) - 1) / 2 - i) * height  # the first policy on top within a variant
        ax.barh(y + offset, [iv.mean for iv in ivs], height, xerr=_err(ivs), capsize=2, color=colors[p], label=p)
    ax.axvline(0, color="black", lw=0.8)
    lo, hi = ax.get_xlim()  # room on both sides of zero, so a bar ending at the frame is not mistaken for a cut one
    pad = 0.08 * (max(hi, 0) - min(lo, 0))
    ax.set_xlim(min(lo, 0) - pad, max(hi, 0) + pad)
    names = []
    for v in order:
        ((key, value),) = changed_levers(spec, v).items()
        names.append(f"{v}\n{key} = {value}")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(f"change in net value per debtor against {spec.base} (EUR, 95 % CI)")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    _legend_above(fig, handles, labels)
    return _save(fig, path)


FIGURE_TEXT = {
    "kpis_by_variant": ("KPIs by variant", "Each KPI by variant and policy, with 95 % intervals."),
    "tornado": (
        "Which lever matters most",
        "The change in net value per debtor each variant brings against the base, per policy, with its paired 95 % interval; "
        "the largest change on top.",
    ),
    "recovery_curves": (
        "Recovery curves",
        "Cumulative share of the balance collected by day (mean over seeds); colour: policy, line style: variant.",
    ),
    "channel_mix": ("Channel mix", "Contacts per debtor by channel, for each variant and policy."),
    "cost_recovery": (
        "Cost and recovery",
        "Contact cost per debtor against recovery by amount, with 95 % intervals; colour: policy, marker: variant.",
    ),
}


def figures(spec: Spec, table: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")

    made = [kpi_figure(spec, table, out / "kpis_by_variant.png")]
    if one_at_a_time(spec) and tornado_order(spec, table):
        made.append(tornado_figure(spec, table, out / "tornado.png"))
    made.append(recovery_figure(spec, table, out / "recovery_curves.png"))
    made.append(channel_figure(spec, table, out / "channel_mix.png"))
    made.append(cost_recovery_figure(spec, table, out / "cost_recovery.png"))
    return made


# ---------------------------------------------------------------------------- the report


def _policy_notes(spec: Spec) -> list[str]:
    """What each label stands for: the full id (run or artifact directory) or the retraining."""
    notes = []
    for label, e in zip(spec.policy_labels, spec.entries, strict=True):
        full = e.describe() if isinstance(e, TrainPolicy) else f"`{e.policy}`"
        if full != f"`{label}`":
            notes.append(f"`{label}` = {full}")
    return notes


def markdown(spec: Spec, table: dict[str, Any], figs: list[Path]) -> str:
    base = spec.base
    kpis = table["kpis"]
    policy_notes = _policy_notes(spec)
    footnote = [f"*Policies:* {'; '.join(policy_notes)}."] if policy_notes else []
    md = [
        f"# {spec.question}",
        "",
        f"Scenario `{spec.scenario}`, {spec.debtors:,} debtors x {spec.seeds} seeds per cell, common random numbers; base variant `{base}`.",
        "",
        "## Variants",
        "",
    ]
    for v in spec.variants:
        changes = ", ".join(f"`{k}` = {val}" for k, val in (spec.variants[v] or {}).items()) or "the base scenario"
        md.append(f"- `{v}`: {changes}")
    md += ["", "## Policies", ""]
    for label, e in zip(spec.policy_labels, spec.entries, strict=True):
        full = e.describe() if isinstance(e, TrainPolicy) else f"`{e.policy}`"
        md.append(f"- `{label}`" + ("" if full == f"`{label}`" else f": {full}"))
    md += ["", "## What is significant", ""]
    found = table["summary"] or ["(no variant besides the base)"]
    md += [line if line.startswith("  - ") else f"- {line}" for line in found]
    tornado = [f for f in figs if f.stem == "tornado"]
    if tornado:
        title, caption = FIGURE_TEXT["tornado"]
        md += ["", f"## Sensitivity: {title.lower()}", "", f"![{title}]({tornado[0].name})", "", caption]

    header = "| variant | policy | " + " | ".join(_label(k) for k in kpis) + " |"
    rule = "|---|---|" + "---:|" * len(kpis)
    md += ["", "## KPIs", "", header, rule]
    for v, by_policy in table["variants"].items():
        for p, row in by_policy.items():
            md.append(f"| `{v}` | `{p}` | " + " | ".join(stats.format_interval(row["kpis"][k], _fmt(k)) for k in kpis) + " |")
    md += ["", f"*{stats.method_note(spec.seeds)}*", *(["", *footnote] if footnote else [])]

    md += ["", f"## Deltas against `{base}`", "", header, rule]
    for v, by_policy in table["variants"].items():
        if v == base:
            continue
        for p, row in by_policy.items():
            md.append(f"| `{v}` | `{p}` | " + " | ".join(_signed(k, row["delta"][k]) if k in row["delta"] else "n/a" for k in kpis) + " |")
    md += [
        "",
        f"*Variant minus `{base}`, same policy and seeds. {stats.method_note(spec.seeds, paired=True)} The summary above quotes these intervals.*",
        *(["", *footnote] if footnote else []),
    ]
    if table["missing"]:
        md += ["", f"**Missing cells** (failed or not run yet; run the experiment again to retry): {', '.join(table['missing'])}"]
    if len(spec.variants) > 1 and not one_at_a_time(spec):
        several = [v for v in spec.variants if v != base and len(changed_levers(spec, v)) != 1]
        md += ["", f"*No sensitivity chart: {', '.join(f'`{v}`' for v in several)} change(s) other than exactly one lever against `{base}`.*"]
    md += ["", "## Figures"]
    for f in figs:
        if f.stem == "tornado":
            continue
        title, caption = FIGURE_TEXT.get(f.stem, (f.stem, ""))
        md += ["", f"### {title}", "", f"![{title}]({f.name})", "", caption]
    return "\n".join(md) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}td{white-space:nowrap}code{background:#f5f5f5;padding:0 3px;border-radius:3px;font-size:0.92em}"
    "img{max-width:100%;height:auto}em{color:#555}h3{margin-top:1.6em}"
)


def render_html(md_text: str, title: str, figures_dir: Path) -> str:
    """The Markdown as a self-contained page: CommonMark + tables, raw HTML off, figures as data URIs."""
    import html

    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(md_text)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                src = str(child.attrs["src"])
                data = base64.b64encode((figures_dir / src).read_bytes()).decode()
                child.attrs["src"] = f"data:image/png;base64,{data}"
    body = md.renderer.render(tokens, md.options, {})
    head = f"<meta charset='utf-8'><meta name='viewport' content='width=device-width'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html>\n<html><head>{head}</head><body>\n{body}</body></html>\n"


def write_report(out: Path) -> list[Path]:
    """report.md, report.html (self-contained), summary.json and the figures, each written atomically."""
    spec, _ = load_results(out)
    table = analyse(out)
    figs = figures(spec, table, out)
    md = markdown(spec, table, figs)
    page = render_html(md, spec.question, out)  # before any report file is replaced: a failure leaves the old ones
    atomic_write(out / "report.md", lambda p: p.write_text(md))
    atomic_write(out / "report.html", lambda p: p.write_text(page))
    keep = {k: table[k] for k in ("question", "scenario", "base", "seeds", "debtors", "summary", "missing")}
    keep["method"] = {"kpis": stats.method_note(spec.seeds), "deltas": stats.method_note(spec.seeds, paired=True)}
    keep["policies"] = {
        label: (e.describe() if isinstance(e, TrainPolicy) else e.policy) for label, e in zip(spec.policy_labels, spec.entries, strict=True)
    }
    keep["results"] = {
        v: {
            p: {"kpis": {k: row["kpis"][k].as_dict() for k in table["kpis"]}, "delta": {k: iv.as_dict() for k, iv in row["delta"].items()}}
            for p, row in by_p.items()
        }
        for v, by_p in table["variants"].items()
    }
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(clean_json(keep), indent=2)))
    return [out / "report.md", out / "report.html", *figs]

"""What-if experiments: specs, relative overrides, the grid with skipping and retrying, the report."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest
import yaml

from experiments.cli import main
from experiments.whatif import EXPERIMENT_DIR, cells, load_spec, run_cell, run_experiment, variant_overrides
from experiments.whatif_report import analyse, write_report
from sim.config import ConfigError, load_scenario


def write_spec(tmp_path, **change):
    spec = {
        "question": "Does a pricier SMS matter?",
        "scenario": "default",
        "variants": {"base": {}, "sms_x3": {"channels.sms.cost_eur": "x3"}, "no_limits": {"compliance_profile": "none"}},
        "policies": ["static_ladder", "digital_first"],
        "seeds": 2,
        "debtors": 400,
        "kpis": ["net_value_per_debtor", "contact_cost_per_debtor"],
    } | change
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def test_example_specs_validate_and_resolve_relative_values():
    names = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))
    assert {"sms_price", "call_centre_capacity", "recession", "regulation_f_cost"} <= set(names)
    for n in names:
        spec = load_spec(n)
        assert spec.question and len(cells(spec)) == len(spec.variants) * len(spec.policies) * spec.seeds
    spec = load_spec("sms_price")
    base = load_scenario("default").channels.sms.cost_eur
    (o,) = variant_overrides(spec, "sms_x2")
    assert o.startswith("channels.sms.cost_eur=") and float(o.split("=")[1]) == pytest.approx(2 * base)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": {"base": {}, "bad": {"channels.smss.cost_eur": 1}}}, "unknown key 'smss'"),
        ({"variants": {"base": {}, "bad": {"channels.sms.cost_eur": "xtwo"}}}, "must look like x2"),
        ({"variants": {"base": {}, "bad": {"compliance_profile": "x2"}}}, "needs a number"),
        ({"kpis": ["happiness"]}, "unknown KPIs"),
        ({"seeds": 0}, "seeds"),
        ({"policies": []}, "policies"),
        ({"policies": ["static_ladder", "static_ladder"]}, "listed twice"),
        ({"policies": [{"policy": "static_ladder", "label": "x"}, {"policy": "digital_first", "label": "x"}]}, "would both be labelled 'x'"),
        ({"policies": [{"policy": "static_ladder", "label": "the ladder"}]}, "label 'the ladder' is not valid"),
        ({"policies": [{"policy": "static_ladder", "lable": "x"}]}, "policies.0.named.lable: Extra inputs"),
        ({"variants": {"base": {}, "sms x3": {}}}, "variant name 'sms x3' is not valid"),
        ({"policies": [{"train": {"algo": "ppo", "timesteps": 9, "overrides": ["n_slotz=3"]}}]}, "policies: ppo: .*unknown key 'n_slotz'"),
    ],
)
def test_bad_specs_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(write_spec(tmp_path, **change))


def test_grid_runs_in_parallel_skips_finished_cells_and_retries_failures(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    out = tmp_path / "xp"
    r1 = run_experiment(spec, out, workers=2)
    assert r1["cells"] == 12 and r1["ran"] == 12 and not r1["failed"]
    (out / "cells" / "sms_x3__digital_first__1.json").unlink()  # as if it had crashed
    r2 = run_experiment(spec, out, workers=1)
    assert r2["ran"] == 1 and r2["skipped"] == 11
    # the same seeds give the same results with 1 or 2 workers
    single = tmp_path / "single"
    run_experiment(spec, single, workers=1)
    for c in cells(spec):
        a = json.loads((out / "cells" / f"{c.key}.json").read_text())["kpis"]
        b = json.loads((single / "cells" / f"{c.key}.json").read_text())["kpis"]
        assert a == b, c


def test_a_failing_cell_is_reported_the_others_finish_and_it_is_retried(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path, policies=["static_ladder", "digital_first"]))
    out = tmp_path / "xp"
    import experiments.whatif as w

    real = w.run_cell

    def flaky(spec_json, cell, out_dir):  # type: ignore[no-untyped-def]
        if cell.policy == "digital_first" and cell.variant == "sms_x3":
            raise RuntimeError("worker died")
        return real(spec_json, cell, out_dir)

    monkeypatch.setattr(w, "run_cell", flaky)
    r = run_experiment(spec, out, workers=1)
    assert len(r["failed"]) == 2 and r["ran"] == 10
    assert (out / "cells" / "sms_x3__digital_first__0.error.txt").read_text().strip().endswith("worker died")
    assert analyse(out)["missing"] == ["sms_x3__digital_first__0", "sms_x3__digital_first__1"]
    monkeypatch.setattr(w, "run_cell", real)
    r = run_experiment(spec, out, workers=1)
    assert r["ran"] == 2 and not r["failed"] and not (out / "cells" / "sms_x3__digital_first__0.error.txt").exists()


class ReportPage(HTMLParser):
    """What a browser would see: tags balanced, text outside code spans, tables, images, paragraphs."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text_outside_code: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self.cell = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag in self.VOID:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self.cell is not None:
            self.cell.append(data)
        if "code" not in self.stack and "style" not in self.stack:
            self.text_outside_code.append(data)


def parse_report(html_text: str) -> ReportPage:
    page = ReportPage()
    page.feed(html_text)
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    return page


def test_report_renders_clean_html_with_one_interval_per_number(tmp_path):
    spec = load_spec(write_spec(tmp_path, kpis=["contact_cost_per_debtor", "complaint_rate", "recovery_rate_amount"]))
    out = tmp_path / "xp"
    run_experiment(spec, out, workers=1)
    files = write_report(out)
    figs = [f for f in files if f.suffix == ".png"]
    assert {f.name for f in figs} == {"kpis_by_variant.png", "tornado.png", "recovery_curves.png", "channel_mix.png", "cost_recovery.png"}
    md = (out / "report.md").read_text()
    assert all(f"]({f.name})" in md for f in figs)  # every figure referenced
    page = parse_report((out / "report.html").read_text())

    text = "".join(page.text_outside_code)
    assert "`" not in text  # every Markdown code span became <code>
    assert not any(line.lstrip().startswith("|") for line in text.splitlines())  # every table row is in a <table>
    assert text.count("2 seeds x 10 debtor batches = 20 replicates") == 2  # the method under both tables

    # figures embedded as PNG data URIs, one per figure file, in report order
    assert len(page.images) == len(figs)
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"

    kpi_table, delta_table = page.tables
    header = kpi_table[0]
    assert header[:3] == ["variant", "policy", "net value per debtor (EUR, discounted)"]  # net value always shown first
    assert len(kpi_table) == 1 + 3 * 2 and len(delta_table) == 1 + 2 * 2
    # KPI rates stay within [0, 1]
    for row in kpi_table[1:]:
        for cell in row[header.index("debtors who complained") :]:
            values = [float(x) for x in re.findall(r"-?\d+\.\d+(?=%)", cell)]
            assert len(values) == 3 and 0.0 <= values[1] <= values[0] <= values[2] <= 100.0, cell

    # the summary quotes the deltas table's own interval for the same number
    t = analyse(out)
    deltas = {(r[0], r[1]): r[2] for r in delta_table[1:]}
    quoted = 0
    for line in t["summary"]:
        m = re.match(r"Under `(.+?)`, `(.+?)` (?:raises|lowers) net value per debtor against `base`: (.+?) EUR", line)
        if m:
            assert deltas[(m[2], m[1])] == m[3], line
            quoted += 1
    assert quoted >= 2
    assert any("`no_limits` changes nothing" in line for line in t["summary"])  # the ladder never hits a limit
    ladder = t["variants"]["sms_x3"]["static_ladder"]
    assert ladder["kpis"]["contact_cost_per_debtor"].mean > t["variants"]["base"]["static_ladder"]["kpis"]["contact_cost_per_debtor"].mean
    d = ladder["delta"]["net_value_per_debtor"]
    assert d.low < d.mean < d.high < 0 and d.significant and d.replicates == 20  # dearer SMS, same debtors: a sure loss


def test_report_escapes_user_text_and_fails_without_replacing_a_good_report(tmp_path, monkeypatch):
    import experiments.whatif_report as wr

    spec = load_spec(write_spec(tmp_path, question="Is <script>alert(1)</script> *risky*?", debtors=200, seeds=1))
    out = tmp_path / "xp"
    run_experiment(spec, out, workers=1)
    write_report(out)
    good = (out / "report.html").read_text()
    assert "<script>" not in good and "&lt;script&gt;" in good
    monkeypatch.setattr(wr, "render_html", lambda *a: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        write_report(out)
    assert (out / "report.html").read_text() == good


def test_tornado_is_drawn_for_one_at_a_time_variants_largest_change_first(tmp_path):
    from experiments.whatif_report import one_at_a_time, tornado_order

    spec = load_spec(
        write_spec(
            tmp_path,
            variants={"base": {}, "sms_x3": {"channels.sms.cost_eur": "x3"}, "sms_x9": {"channels.sms.cost_eur": "x9"}},
            policies=["static_ladder"],
            debtors=300,
            seeds=1,
        )
    )
    out = tmp_path / "xp"
    run_experiment(spec, out, workers=1)
    assert one_at_a_time(spec)
    t = analyse(out)
    assert tornado_order(spec, t) == ["sms_x9", "sms_x3"]  # nine times the SMS price costs more than three
    write_report(out)
    assert "## Sensitivity" in (out / "report.md").read_text() and (out / "tornado.png").exists()
    both = load_spec(write_spec(tmp_path, variants={"base": {}, "both": {"channels.sms.cost_eur": "x3", "compliance_profile": "none"}}))
    assert not one_at_a_time(both)
    out2 = tmp_path / "xp2"
    run_experiment(both.model_copy(update={"debtors": 200, "seeds": 1, "policies": ["static_ladder"]}), out2, workers=1)
    files = write_report(out2)
    assert "tornado.png" not in {f.name for f in files} and "No sensitivity chart: `both`" in (out2 / "report.md").read_text()


def test_experiment_cli(tmp_path, capsys):
    spec = write_spec(tmp_path, debtors=200, seeds=1)
    assert main(["experiment", "run", str(spec), "--out", str(tmp_path / "x"), "--no-progress"]) == 0
    assert main(["experiment", "report", str(tmp_path / "x")]) == 0
    assert "no_limits" in capsys.readouterr().out
    assert main(["experiment", "report", str(tmp_path)]) == 2


@pytest.mark.slow
def test_ray_backend_gives_the_same_results_as_the_local_backend(tmp_path):
    spec = load_spec(write_spec(tmp_path, policies=["static_ladder"], seeds=1, debtors=300))
    run_experiment(spec, tmp_path / "local", workers=1)
    r = run_experiment(spec, tmp_path / "ray", workers=2, backend="ray")
    assert r["ran"] == 3 and not r["failed"]
    for c in cells(spec):
        a = json.loads((tmp_path / "local" / "cells" / f"{c.key}.json").read_text())
        b = json.loads((tmp_path / "ray" / "cells" / f"{c.key}.json").read_text())
        assert a["kpis"] == b["kpis"] and a["curve"] == b["curve"], c


def test_a_spec_naming_a_missing_artifact_fails_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="neither a registered policy"):
        load_spec(write_spec(tmp_path, policies=["static_ladder", str(tmp_path / "artifacts" / "gone")]))


_REAL_RUN_CELL = run_cell


def _suicidal_run_cell(spec_json, cell, out_dir):  # type: ignore[no-untyped-def]
    import os

    if cell.variant == "sms_x3" and cell.policy == "digital_first" and cell.seed == 0:
        os._exit(3)  # the worker process dies
    return _REAL_RUN_CELL(spec_json, cell, out_dir)


def test_a_worker_that_dies_loses_only_its_cell(tmp_path, monkeypatch):
    import experiments.whatif as w

    spec = load_spec(write_spec(tmp_path, debtors=200))
    monkeypatch.setattr(w, "run_cell", _suicidal_run_cell)
    r = run_experiment(spec, tmp_path / "xp", workers=2)
    assert list(r["failed"]) == ["sms_x3__digital_first__0"]
    assert r["ran"] == 11
    assert "died" in (tmp_path / "xp" / "cells" / "sms_x3__digital_first__0.error.txt").read_text()


def test_policies_can_be_artifacts_or_retrained_per_variant(tmp_path):
    from agents.export import export

    art = export("segment_journeys", tmp_path / "art", eval_debtors=100)
    spec = load_spec(
        write_spec(
            tmp_path,
            variants={"base": {}, "sms_x3": {"channels.sms.cost_eur": "x3"}},
            policies=[
                str(art),
                {
                    "train": {
                        "algo": "maskable_ppo",
                        "timesteps": 512,
                        "overrides": ["n_slots=16", "eval_debtors=50", "eval_every_steps=256", "select_top=null"],
                    }
                },
            ],
            seeds=1,
            debtors=200,
        )
    )
    out = tmp_path / "xp"
    r = run_experiment(spec, out, workers=1)
    assert r["ran"] == 4 and not r["failed"], r["failed"]
    runs = sorted((out / "train").iterdir())
    assert [d.name for d in runs] == ["base__maskable_ppo", "sms_x3__maskable_ppo"]  # one learner per variant
    t = analyse(out)
    assert set(t["variants"]["sms_x3"]) == {"segment_journeys", "maskable_ppo"}  # the artifact's policy id; the algorithm
    before = {d: sorted(d.iterdir()) for d in runs}
    run_experiment(spec, out, workers=1)
    assert {d: sorted(d.iterdir()) for d in runs} == before  # trained runs are reused, not retrained
    # a learner whose training settings changed is trained again (the old runs' models are not scored as its)
    raw = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    raw["policies"][1]["train"]["overrides"].append("ent_coef=0.02")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    run_experiment(load_spec(tmp_path / "spec.yaml"), out, workers=1)
    assert all(len(list(d.iterdir())) == len(before[d]) + 1 for d in runs)


def test_cells_are_keyed_by_label_and_rerun_when_the_label_means_another_policy(tmp_path):
    spec = load_spec(write_spec(tmp_path, policies=[{"policy": "static_ladder", "label": "champion"}, "digital_first"], debtors=200, seeds=1))
    out = tmp_path / "xp"
    assert run_experiment(spec, out, workers=1)["ran"] == 6
    assert (out / "cells" / "sms_x3__champion__0.json").exists()
    moved = load_spec(write_spec(tmp_path, policies=[{"policy": "segment_journeys", "label": "champion"}, "digital_first"], debtors=200, seeds=1))
    r = run_experiment(moved, out, workers=1)
    assert r["ran"] == 3 and r["skipped"] == 3  # the champion's cells are stale, digital_first's are not
    assert json.loads((out / "cells" / "base__champion__0.json").read_text())["policy"] == "segment_journeys"
    cell = out / "cells" / "base__digital_first__0.json"
    old = json.loads(cell.read_text())
    del old["format"], old["batches"]  # as written before debtor batches were kept
    cell.write_text(json.dumps(old))
    assert run_experiment(moved, out, workers=1)["ran"] == 1
    write_report(out)
    assert "| `base` | `champion` |" in (out / "report.md").read_text()


@pytest.mark.parametrize("name", ["regulation_f_cost", "call_centre_capacity"])
def test_the_examples_retrain_a_learner_per_variant_end_to_end_at_a_tiny_budget(tmp_path, name):
    from experiments.whatif import TrainPolicy

    spec = load_spec(name)
    learners = [e for e in spec.entries if isinstance(e, TrainPolicy)]
    assert [e.label for e in learners] == ["learner"] and learners[0].train.timesteps >= 1_000_000
    quick = ["n_slots=16", "eval_debtors=50", "eval_every_steps=256", "select_top=null"]
    tiny = TrainPolicy.model_validate({"train": {"algo": "maskable_ppo", "timesteps": 512, "overrides": quick}, "label": "learner"})
    small = spec.model_copy(update={"debtors": 200, "seeds": 1, "policies": [*(e for e in spec.entries if e not in learners), tiny]})
    out = tmp_path / name
    r = run_experiment(small, out, workers=2)
    assert not r["failed"] and r["ran"] == len(spec.variants) * len(spec.policies)
    assert sorted(d.name for d in (out / "train").iterdir()) == sorted(f"{v}__learner" for v in spec.variants)
    files = write_report(out)
    assert "tornado.png" in {f.name for f in files}  # both examples change one lever per variant
    html_text = (out / "report.html").read_text()
    page = parse_report(html_text)
    assert "`" not in "".join(page.text_outside_code) and len(page.images) == len([f for f in files if f.suffix == ".png"])
    assert any(row[1] == "learner" for row in page.tables[1][1:])  # the learner has its deltas
    assert "<code>learner</code> = maskable_ppo retrained on each variant for 512 debtor-days" in html_text  # the footnote

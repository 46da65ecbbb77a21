"""What-if experiments: specs, relative overrides, the grid with skipping and retrying, the report."""

from __future__ import annotations

import json

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


def test_report_has_significance_summary_html_and_figures(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    out = tmp_path / "xp"
    run_experiment(spec, out, workers=1)
    files = write_report(out)
    names = {f.name for f in files}
    assert {"report.md", "report.html", "kpis_by_variant.png", "recovery_curves.png", "channel_mix.png", "cost_recovery.png"} <= names
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "What is significant" in html  # self-contained
    import html.parser as hp

    class Balance(hp.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.errors = 0

        def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
            if tag not in ("meta", "img"):
                self.stack.append(tag)

        def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
            if self.stack and self.stack[-1] == tag:
                self.stack.pop()
            else:
                self.errors += 1

    checker = Balance()
    checker.feed(html)
    assert checker.errors == 0 and checker.stack == [] and html.count("<table>") == 2  # KPIs, deltas
    t = analyse(out)
    ladder = t["variants"]["sms_x3"]["static_ladder"]
    assert ladder["kpis"]["contact_cost_per_debtor"][0] > t["variants"]["base"]["static_ladder"]["kpis"]["contact_cost_per_debtor"][0]
    assert any("`sms_x3`" in line and ("significant" in line or "changes nothing" in line) for line in t["summary"])
    assert any("`no_limits` changes nothing" in line for line in t["summary"])  # the ladder never hits a limit


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
                {"train": {"algo": "maskable_ppo", "timesteps": 512, "overrides": ["n_slots=16", "eval_debtors=50", "eval_every_steps=256"]}},
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
    assert set(t["variants"]["sms_x3"]) == {str(art), "train:maskable_ppo"}
    before = {d: sorted(d.iterdir()) for d in runs}
    run_experiment(spec, out, workers=1)
    assert {d: sorted(d.iterdir()) for d in runs} == before  # trained runs are reused, not retrained

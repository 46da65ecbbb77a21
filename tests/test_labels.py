"""Short policy labels: derived from ids, run and artifact directories, or given; collisions named."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main
from experiments.labels import LABEL_RE, assign_labels, check_label, derive_label


def test_labels_derive_from_ids_runs_and_artifacts(tmp_path):
    assert derive_label("segment_journeys") == "segment_journeys"
    assert derive_label("test/ladder_evening_calls") == "test_ladder_evening_calls"
    run = tmp_path / "runs" / "late_stage__maskable_ppo__0__20260314-153012"
    run.mkdir(parents=True)
    assert derive_label(str(run)) == "maskable_ppo@0314-1530"
    assert derive_label(str(tmp_path / "runs" / "default__dqn__3__20260101-090000")) == "dqn-s3@0101-0900"
    art = tmp_path / "artifacts" / "prod"
    art.mkdir(parents=True)
    (art / "manifest.json").write_text(json.dumps({"policy_id": "default__ppo__0__20260102-235959"}))
    assert derive_label(str(art)) == "ppo@0102-2359"  # the artifact's policy id, not the folder's name
    odd = tmp_path / "my best run (final, really final) v2"
    odd.mkdir()
    label = derive_label(str(odd))
    assert LABEL_RE.match(label) and label.startswith("my_best_run") and len(label) <= 32


def test_given_labels_win_and_collisions_are_named():
    assert assign_labels(["static_ladder", "runs/default__ppo__0__20260101-090000"], [None, "champion"]) == ["static_ladder", "champion"]
    with pytest.raises(ValueError, match="'a/default__ppo__0__20260101-090000' and 'b/default__ppo__0__20260101-090000' would both be labelled"):
        assign_labels(["a/default__ppo__0__20260101-090000", "b/default__ppo__0__20260101-090000"])
    with pytest.raises(ValueError, match="listed twice"):
        assign_labels(["static_ladder", "static_ladder"])
    with pytest.raises(ValueError, match="not valid"):
        check_label("two words")


def test_evaluate_shows_an_artifact_by_its_short_label_with_the_path_in_a_footnote(tmp_path, capsys):
    from agents.export import export

    art = export("segment_journeys", tmp_path / "artifacts" / "served_journeys_2026_q1", eval_debtors=100)
    out = tmp_path / "eval"
    rc = main(["evaluate", "--policies", f"static_ladder,{art}", "--debtors", "300", "--seeds", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    report = (out / "report.md").read_text()
    assert "| `static_ladder` | `segment_journeys` |" in report
    assert f"Policies: `segment_journeys` = `{art}`." in report
    assert str(art) not in report.replace(f"= `{art}`", "")  # the path appears only in the footnote
    assert set(json.loads((out / "kpis.json").read_text())["policies"]) == {"static_ladder", "segment_journeys"}
    capsys.readouterr()
    assert main(["evaluate", "--policies", f"segment_journeys,{art}", "--debtors", "300", "--seeds", "1", "--no-progress"]) == 2
    assert "would both be labelled 'segment_journeys'" in capsys.readouterr().err


def test_the_doctests_hold():
    import doctest

    import experiments.labels
    import experiments.stats

    assert doctest.testmod(experiments.labels).failed == 0 and doctest.testmod(experiments.stats).failed == 0

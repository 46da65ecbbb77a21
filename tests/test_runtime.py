"""Export and the production runtime: parity, isolation, tamper refusal, guardrails, batch scoring."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import helpers_train
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers_views import random_views

import policies
from agents.export import export
from agents.learned import LearnedPolicy, action_logits, load_model
from agents.train import train
from policies.actions import encode_flat
from policies.compliance import PROFILES, action_mask, check, get_profile
from policies.decision import HEAD_WIDTH, decision_uniforms, masked_probabilities
from policies.features import N_FEATURES, encode
from policies.records import RecordError, records_from_views, views_from_records
from policies.runtime import ArtifactError, load

TINY = [*helpers_train.TINY, "learning_starts=100"]  # DQN's too


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # a barely trained MaskablePPO from the shipped wait_prior would put "wait" first for every account, and
    # these tests need first choices that compliance blocks (reasons); SB3's uniform start gives them
    extra = {"maskable_ppo": ["wait_prior=null"], "dqn": []}
    return {algo: train("default", algo, 1024, seed=0, out=root, train_overrides=TINY + extra[algo]).root for algo in extra}


@pytest.fixture(scope="module")
def artifacts(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {algo: export(str(run), root / algo, eval_debtors=300) for algo, run in runs.items()}


@pytest.mark.parametrize("algo", ["maskable_ppo", "dqn"])
def test_artifact_and_source_policy_choose_the_same_action_on_10000_states(runs, artifacts, algo):
    fn = load(artifacts[algo])
    learned = LearnedPolicy(load_model(algo, runs[algo] / "best" / "model.zip"))
    learned.reset(0)
    v = random_views(np.random.default_rng(11), 10_000)
    served, _, _, _ = fn.decide_arrays(v)
    mask = action_mask(v, get_profile(fn.manifest["compliance_profile"]))
    trained = learned.act(v, mask)
    # the two networks agree to float precision; ONNX Runtime and torch add in different orders, so a
    # decision may differ only where its draw falls on a float boundary: a sampled head's uniform at a
    # step of its cumulative probabilities (seen on one machine: 1 state of 10,000, the offer head of a
    # wait), or two Q-values alike; any other difference fails
    x = encode(v)
    scores, logits = fn.scores(x), action_logits(learned.model, x)
    np.testing.assert_allclose(scores, logits, rtol=0, atol=1e-4)
    differ = np.flatnonzero((served != trained).any(axis=1))
    if logits.shape[1] == HEAD_WIDTH:
        u, probs = decision_uniforms(v, learned.key_), masked_probabilities(logits, mask)
        for row in differ:
            for k in np.flatnonzero(served[row] != trained[row]):
                cdf = np.cumsum(probs[k][row])
                assert np.abs(u[row, k] * cdf[-1] - cdf).min() < 1e-5, (row, k, served[row], trained[row])
    else:
        for row in differ:
            a, b = encode_flat(served[row][None])[0], encode_flat(trained[row][None])[0]
            assert abs(logits[row, a] - logits[row, b]) < 1e-4, (row, served[row], trained[row])
    assert len(differ) <= 3


def test_manifest_says_what_production_needs(artifacts):
    m = json.loads((artifacts["maskable_ppo"] / "manifest.json").read_text())
    for key in (
        "format_version",
        "policy_id",
        "algo",
        "scenario",
        "observation",
        "action_codec",
        "compliance_profile",
        "evaluation",
        "versions",
        "created",
        "files",
    ):
        assert key in m, key
    assert m["observation"]["count"] == len(m["observation"]["features"]) == 58
    assert set(m["files"]) == {"model.onnx"} and len(m["files"]["model.onnx"]) == 64
    assert "net_value_per_debtor" in m["evaluation"]["kpis"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_decision_is_legal_whatever_the_model_says(artifacts, profile):
    fn = load(artifacts["maskable_ppo"], profile=profile)
    v = random_views(np.random.default_rng(3), 3000)
    actions, prop, first, reasons = fn.decide_arrays(v)
    assert (check(actions, v, get_profile(profile)) == 0).all()
    assert ((prop > 0) & (prop <= 1)).all()
    blocked_first = check(first, v, get_profile(profile)) != 0
    assert all((r is not None) == b for r, b in zip(reasons, blocked_first, strict=True))


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("algo", ["maskable_ppo", "dqn"])
def test_one_account_decisions_equal_the_batch_decisions(artifacts, algo, profile):
    """decide(record) takes the plain-Python path for a logit head; it must give exactly what the
    batch path gives for the same account: action, propensity, alternatives and reason."""
    fn = load(artifacts[algo], profile=profile)
    records = records_from_views(random_views(np.random.default_rng(21), 1500))
    batch = fn.decide_batch(records, probs=True)
    singles = [fn.decide(r) for r in records]
    assert [d.as_dict() for d in singles] == [d.as_dict() for d in batch]
    # the decision log's fields agree too: the action's indices and the policy's probabilities
    assert [d.action for d in singles] == [d.action for d in batch] and all(len(d.action) == 4 for d in batch)
    assert [d.probs for d in singles] == [d.probs for d in batch]
    assert (batch[0].probs is not None) == (algo == "maskable_ppo")
    logged_only = {"action", "probs"}
    assert all(
        d.as_dict() == {k: v for k, v in dataclasses.asdict(d).items() if k not in logged_only} for d in singles[:50]
    )  # as_dict misses no field
    assert sum(d.reason is not None for d in batch) > 10  # the comparison covered reasons too


def test_the_one_account_forward_pass_equals_the_sessions_even_beyond_float32(artifacts):
    fn = load(artifacts["maskable_ppo"])
    rng = np.random.default_rng(5)
    for features in [rng.normal(size=N_FEATURES).tolist(), [1e39, *rng.normal(size=N_FEATURES - 1).tolist()]]:
        expected = fn.scores(np.array([features], dtype=np.float32))[0]  # 1e39 becomes inf, as numpy casts it
        assert fn._forward_row(features) == expected.astype(np.float32).tolist()


def test_one_account_decisions_from_several_threads_at_once_equal_the_batch(artifacts):
    """The one-account path writes each account's features into a buffer bound to the model once
    per thread: threads deciding at the same time must not see each other's accounts."""
    from concurrent.futures import ThreadPoolExecutor

    fn = load(artifacts["maskable_ppo"])
    records = records_from_views(random_views(np.random.default_rng(5), 1200))
    want = [d.as_dict() for d in fn.decide_batch(records)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda r: fn.decide(r).as_dict(), records))
    assert got == want
    assert len({d["channel"] for d in want}) > 2  # different accounts, different answers: the check can fail


@pytest.mark.parametrize("algo", ["maskable_ppo", "dqn"])
def test_a_large_batch_decided_in_parallel_chunks_equals_small_batches(artifacts, algo):
    from policies.runtime import CHUNK_ROWS

    fn = load(artifacts[algo])
    v = random_views(np.random.default_rng(8), 2 * CHUNK_ROWS + 1234)
    actions, prop, first, reasons = fn.decide_arrays(v)
    step = CHUNK_ROWS // 2  # each small batch is decided in one piece
    parts = [fn.decide_arrays(v.rows(a, min(a + step, len(v)))) for a in range(0, len(v), step)]
    assert np.array_equal(actions, np.concatenate([p[0] for p in parts]))
    assert np.array_equal(prop, np.concatenate([p[1] for p in parts]))
    assert np.array_equal(first, np.concatenate([p[2] for p in parts]))
    assert reasons == [r for p in parts for r in p[3]]


def test_decide_gives_window_times_propensity_and_alternatives(artifacts):
    fn = load(artifacts["maskable_ppo"])
    rec = {"balance_eur": 900, "outstanding_eur": 900, "dpd": 20, "days_in_collections": 5, "channels_on_file": ["sms", "email", "call"]}
    d = fn.decide(rec)
    assert 0 < d.propensity <= 1
    assert len(d.alternatives) == 3 and all(0 < a.probability <= 1 for a in d.alternatives)
    if d.channel != "wait":
        assert d.window_start < d.window_end
    only_wait = fn.decide(rec | {"channels_on_file": ["email"], "opted_out": ["email"]})
    assert only_wait.channel == "wait" and only_wait.propensity == pytest.approx(1.0)


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_a_tampered_or_mismatched_artifact_is_refused(artifacts, tmp_path):
    a = _copy(artifacts["maskable_ppo"], tmp_path)
    data = bytearray((a / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (a / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        load(a)
    b = _copy(artifacts["maskable_ppo"], tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps(m | {"format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99"):
        load(b)
    m["observation"]["features"][0]["name"] = "renamed"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="observation schema"):
        load(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(b)
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load(tmp_path)


def test_runtime_and_artifact_loading_import_no_training_stack(artifacts):
    code = (
        "import sys, policies; fn = policies.load(sys.argv[1]);"
        "fn.decide({'balance_eur': 500, 'outstanding_eur': 500, 'dpd': 9, 'days_in_collections': 2, 'channels_on_file': ['sms']});"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'stable_baselines3', 'sb3_contrib', 'simpy', 'gymnasium', 'sim', 'agents'}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(artifacts["maskable_ppo"])], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_rule_policies_export_as_a_manifest_and_serve_the_same_actions(tmp_path):
    art = export("static_ladder", tmp_path / "ladder", eval_debtors=200)
    assert sorted(p.name for p in art.iterdir()) == ["manifest.json"]
    fn = load(art)
    v = random_views(np.random.default_rng(2), 2000)
    served, prop, _, _ = fn.decide_arrays(v)
    np.testing.assert_array_equal(served, policies.make("static_ladder").act(v, action_mask(v, get_profile("us_reg_f"))))
    assert (prop == 1.0).all()


def test_a_failed_export_leaves_no_half_artifact(tmp_path):
    with pytest.raises(ValueError):
        export("no_such_policy", tmp_path / "x")
    with pytest.raises(ValueError, match="cannot be served"):
        export("oracle", tmp_path / "y")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "z").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        export("static_ladder", tmp_path / "z")


def test_records_round_trip_and_name_the_bad_field():
    v = random_views(np.random.default_rng(9), 300)
    back = views_from_records(records_from_views(v))
    for name in ("balance_eur", "on_file", "opted_out", "contacts_7d", "days_since_response", "last_outcome", "product"):
        np.testing.assert_array_equal(getattr(back, name), getattr(v, name), err_msg=name)
    good = {"balance_eur": 10, "outstanding_eur": 10, "dpd": 1, "days_in_collections": 0, "channels_on_file": []}
    for bad, field in (
        (good | {"dpd": -1}, "dpd"),
        (good | {"app_user": "yes"}, "app_user"),
        (good | {"colour": 1}, "colour"),
        ({"balance_eur": 1}, "outstanding_eur"),
    ):
        with pytest.raises(RecordError) as e:
            views_from_records([good, bad])
        assert e.value.index == 1 and e.value.field == field


def test_decide_cli_scores_good_rows_and_reports_bad_ones(artifacts, tmp_path):
    csv_in = tmp_path / "accounts.csv"
    csv_in.write_text(
        "account_id,balance_eur,outstanding_eur,dpd,days_in_collections,channels_on_file,contacts_7d\n"
        "A1,1200,1200,12,3,sms;email;call,call:2\n"
        "A2,500,-5,40,30,sms,\n"
        "A3,900,900,20,10,sms;fax,\n"
        "A4,300,300,5,1,email,\n"
    )
    out = tmp_path / "decisions.parquet"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "decide",
            str(artifacts["maskable_ppo"]),
            "--input",
            str(csv_in),
            "--output",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    rows = pq.read_table(out).to_pylist()
    assert [r["account_id"] for r in rows] == ["A1", "A4"]
    assert "row 2: outstanding_eur" in p.stderr and "row 3: channels_on_file: unknown channel 'fax'" in p.stderr
    errors = (tmp_path / "decisions.errors.csv").read_text().splitlines()
    assert errors[0] == "row,reason" and len(errors) == 3


def test_a_random_rule_artifact_reports_its_true_propensity(tmp_path):
    art = export("random", tmp_path / "random", eval_debtors=100)
    fn = load(art)
    v = random_views(np.random.default_rng(4), 500)
    actions, prop, _, _ = fn.decide_arrays(v)
    m = action_mask(v, get_profile("us_reg_f"))
    wait = actions[:, 0] == 0
    np.testing.assert_allclose(prop[wait], 1.0 / m[wait, :7].sum(axis=1))
    expect = 1.0 / (m[:, :7].sum(1) * m[:, 7:11].sum(1) * m[:, 11:15].sum(1) * m[:, 15:19].sum(1))
    np.testing.assert_allclose(prop[~wait], expect[~wait])


def test_learned_artifacts_come_from_torchs_current_onnx_exporter(artifacts):
    """torch.export-based (dynamo) export: opset 18 or later (the TorchScript exporter wrote 17 here),
    one self-contained file, a symbolic batch dimension."""
    import onnx

    for algo, root in artifacts.items():
        model = onnx.load(str(root / "model.onnx"), load_external_data=False)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert opset >= 18, (algo, opset)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer), algo
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.dim_value, algo


@pytest.mark.parametrize("tied", [False, True])
def test_batch_alternatives_equal_the_one_account_definition_including_ties(tied):
    """runtime._factored_alternatives ranks every row at once; it must return exactly what
    decision.alternatives returns row by row, also when probabilities tie (integer logits)."""
    from policies.decision import HEAD_WIDTH, alternatives, masked_probabilities
    from policies.runtime import _factored_alternatives, _named_alternatives

    rng = np.random.default_rng(4)
    n = 2000
    logits = rng.integers(-2, 3, size=(n, HEAD_WIDTH)).astype(float) if tied else rng.normal(size=(n, HEAD_WIDTH))
    mask = rng.random((n, HEAD_WIDTH)) < 0.8
    mask[:, 0] = True  # waiting is always allowed
    for a, b in ((7, 11), (11, 15), (15, 19)):  # each head keeps one allowed choice
        mask[np.arange(n), rng.integers(a, b, size=n)] = True
    probs = masked_probabilities(logits, mask)
    actions = np.stack([rng.integers(0, d, size=n) for d in (7, 4, 4, 4)], axis=1)
    got = _factored_alternatives(probs, actions)
    rows = [p.tolist() for p in probs]
    want = [_named_alternatives(alternatives([r[i] for r in rows], actions[i].tolist())) for i in range(n)]
    assert got == want
    assert sum(len(g) < 3 for g in got) < n  # mostly full lists: the comparison is not vacuous

"""The HTTP service: endpoints, errors, auth, decision log, the published contract (schemathesis with
every check), champion/challenger, metrics, hot reload, and a live load test on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
import warnings
from pathlib import Path

import msgspec
import numpy as np
import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402

from agents.export import export  # noqa: E402
from policies.records import Account, parse_record, records_from_views, row_from_account, views_from_accounts, views_from_rows  # noqa: E402
from policies.server import MAX_BATCH, assignment_unit, create_app  # noqa: E402
from tests.helpers_views import random_views  # noqa: E402

OK = {
    "balance_eur": 1200,
    "outstanding_eur": 1200,
    "dpd": 12,
    "days_in_collections": 3,
    "channels_on_file": ["sms", "email", "call"],
    "account_id": "A1",
}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return export("digital_first", tmp_path_factory.mktemp("art") / "digital_first", eval_debtors=200)


@pytest.fixture(scope="module")
def learned_artifact(tmp_path_factory):
    """A tiny MaskablePPO artifact: its one-account requests take the runtime's plain-Python path."""
    from helpers_train import tiny_run

    root = tmp_path_factory.mktemp("learned")
    run = tiny_run(root / "runs")
    return export(str(run), root / "artifact", eval_debtors=200)


@pytest.fixture()
def client(artifact, tmp_path):
    app = create_app(artifact, token="s3cret", decision_log=tmp_path / "decisions.jsonl")
    with TestClient(app, headers={"Authorization": "Bearer s3cret"}) as c:
        yield c, tmp_path / "decisions.jsonl"


def test_decide_batch_policy_health_and_the_decision_log(client, artifact):
    from policies.runtime import load

    c, log = client
    r = c.post("/v1/decide", json=OK, headers={"x-request-id": "req-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["request_id"] == "req-1" and body["policy_id"] == "digital_first"
    assert body["decision"]["account_id"] == "A1" and 0 < body["decision"]["propensity"] <= 1
    spelled_out = OK | {"app_user": False, "days_since_contact": None, "contacts_7d": {}}  # the defaults, written out
    r = c.post("/v1/decide/batch", json={"accounts": [spelled_out, OK | {"account_id": "A2", "opted_out": ["sms", "email", "call"]}]})
    assert r.status_code == 200 and [d["account_id"] for d in r.json()["decisions"]] == ["A1", "A2"]
    assert r.json()["decisions"][1]["channel"] == "wait"
    assert c.get("/v1/policy").json()["policy_id"] == "digital_first"
    assert c.get("/healthz").json() == {"status": "ok"} and c.get("/readyz").json() == {"ready": True}
    c.__exit__(None, None, None)  # clean shutdown flushes the log
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["request_id"] == "req-1"
    assert {"request_id", "policy_id", "view_hash", "decision", "propensity", "time"} <= set(lines[0])
    first = lines[0]
    assert first["arm"] == "champion" and first["assignment_prob"] == 1.0 and first["account_id"] == "A1"
    assert len(first["policy_version"]) == 16 and first["policy_version"] == load(artifact).version
    assert first["decision"] == {k: body["decision"][k] for k in ("channel", "window", "tone", "offer")}
    assert 0 <= first["action_index"] < 448 and first["probs"] is None  # a deterministic rule states no distribution
    assert first["view"]["dpd"] == 12 and first["view"]["on_file"] == [True, True, False, False, False, True]
    # the view hash identifies the account state, not the spelling of the request
    assert lines[0]["view_hash"] == lines[1]["view_hash"] != lines[2]["view_hash"]


def test_the_hot_routes_answer_methods_ids_and_probes_as_documented(client):
    """The decide routes and the probes are answered below FastAPI: they must still refuse other
    methods with 405 and an Allow header, answer HEAD probes, and give every request its own id."""
    c, _ = client
    r = c.get("/v1/decide")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = c.post("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = c.head("/readyz")
    assert r.status_code == 200 and r.content == b""
    ids = {c.post("/v1/decide", json=OK).json()["request_id"] for _ in range(50)}
    ids |= {c.post("/v1/decide/batch", json={"accounts": [OK]}).json()["request_id"] for _ in range(50)}
    assert len(ids) == 100
    doc = c.get("/openapi.json").json()["paths"]
    assert set(doc["/v1/decide"]) == {"post"} and set(doc["/healthz"]) == {"get"}
    assert c.get("/v1/decide", headers={"Authorization": ""}).status_code == 401  # the token is checked first


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"dpd": -1}, ["body", "dpd"]),
        ({"channels_on_file": ["fax"]}, ["body", "channels_on_file", 0]),
        ({"app_user": "yes"}, ["body", "app_user"]),
        ({"contacts_7d": {"call": -2}}, ["body", "contacts_7d", "call"]),
        ({"colour": "red"}, ["body", "colour"]),
    ],
)
def test_invalid_bodies_get_422_naming_the_field(client, change, loc):
    c, _ = client
    r = c.post("/v1/decide", json=OK | change)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc


def test_missing_field_malformed_oversized_and_unauthorised(client, artifact):
    c, _ = client
    r = c.post("/v1/decide", json={k: v for k, v in OK.items() if k != "dpd"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dpd"]
    assert c.post("/v1/decide", content=b"{nope", headers={"content-type": "application/json"}).status_code == 422
    assert c.post("/v1/decide", content=b" " * 1_100_000, headers={"content-type": "application/json"}).status_code == 413
    with TestClient(create_app(artifact, token="s3cret")) as anon:
        assert anon.post("/v1/decide", json=OK).status_code == 401
        assert anon.post("/v1/decide", json=OK, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert anon.get("/healthz").status_code == 200  # probes need no token


def test_bodies_streamed_past_the_limit_get_413_and_bad_batches_422(artifact):
    with TestClient(create_app(artifact, max_body_bytes=10_000)) as c:
        chunks = (b" " * 4096 for _ in range(10))  # no content-length: the limit is counted as it arrives
        assert c.post("/v1/decide", content=chunks, headers={"content-type": "application/json"}).status_code == 413
        r = c.post("/v1/decide", json=[OK])
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
        r = c.post("/v1/decide", json=OK | {"account_id": "x" * 201})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "account_id"]
        r = c.post("/v1/decide/batch", json={"accounts": [OK, OK | {"dpd": 2.5}]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "accounts", 1, "dpd"]
        r = c.post("/v1/decide/batch", json={"accounts": [OK, "A2"]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "accounts", 1]
        for bad in ({"accounts": []}, {"accounts": OK}, {"account": [OK]}, {"accounts": [OK], "more": 1}):
            assert c.post("/v1/decide/batch", json=bad).status_code == 422, bad


def test_a_learned_policy_answers_over_http_as_it_does_in_process(learned_artifact):
    from policies.runtime import load

    fn = load(learned_artifact)
    records = [OK, OK | {"opted_out": ["sms"], "days_since_conversation": 1, "contacts_7d": {"call": 2}}, OK | {"vulnerable": True}]
    with TestClient(create_app(learned_artifact)) as c:
        for rec in records:
            got = c.post("/v1/decide", json=rec).json()["decision"]
            assert got == fn.decide(rec).as_dict() | {"account_id": rec.get("account_id")}
        batch = c.post("/v1/decide/batch", json={"accounts": records}).json()["decisions"]
        assert [{k: v for k, v in d.items() if k not in ("account_id", "arm")} for d in batch] == [fn.decide(r).as_dict() for r in records]


def test_the_wire_decoder_gives_the_views_of_the_one_validator():
    """The HTTP path decodes with msgspec Structs generated from FIELDS; for every valid record it
    must build exactly the view ``parse_record`` builds (the path behind ``collectrl decide``)."""
    records = records_from_views(random_views(np.random.default_rng(7), 300))
    for i, rec in enumerate(records):
        wire = row_from_account(msgspec.json.decode(json.dumps(rec).encode(), type=Account))
        assert wire == parse_record(rec, i), i
    # the batch endpoint builds the same views column by column
    accounts = msgspec.json.decode(json.dumps(records).encode(), type=list[Account])
    columnar, by_rows = views_from_accounts(accounts), views_from_rows([row_from_account(a) for a in accounts])
    for name in by_rows.field_names():
        a, b = getattr(columnar, name), getattr(by_rows, name)
        assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all(), name


def test_the_document_says_what_the_validator_does(artifact):
    """The faults schemathesis found in the pydantic-documented service, one by one."""
    with TestClient(create_app(artifact, max_body_bytes=1_000_000)) as c:
        doc = c.get("/openapi.json").json()
        for path in ("/v1/decide", "/v1/decide/batch"):
            assert {"200", "401", "413", "422"} <= set(doc["paths"][path]["post"]["responses"]), path
        schemas = doc["components"]["schemas"]
        ok = doc["paths"]["/v1/policy"]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PolicyOut"}
        assert {"policy_version", "share", "arms", "assignment"} <= set(schemas["PolicyOut"]["required"])
        assert schemas["Batch"]["properties"]["accounts"]["maxItems"] == MAX_BATCH
        day_of_month = schemas["Account"]["properties"]["day_of_month"]
        assert day_of_month["type"] == "integer" and "anyOf" not in day_of_month
        assert c.post("/v1/decide", json=OK | {"day_of_month": None}).status_code == 422  # not nullable, as documented
        assert c.post("/v1/decide", json=OK | {"outstanding_eur": 5e8, "balance_eur": 10}).status_code == 200  # allowed, as documented
        assert c.post("/v1/decide", json=OK | {"dpd": 12.0}).status_code == 200  # JSON Schema's integers include 12.0
        r = c.post("/v1/decide", json=OK | {"dpd": 12.5})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dpd"]
        assert c.post("/v1/decide/batch", json={"accounts": [OK | {"dpd": 12.0, "contacts_7d": {"sms": 1.0}}]}).status_code == 200
        for bad, loc in (
            ({"dpd": 2.5}, ["dpd"]),
            ({"contacts_7d": {"sms": 1, "call": 0.5}}, ["contacts_7d", "call"]),
            ({"days_since_contact": 1.5}, ["days_since_contact"]),
        ):
            r = c.post("/v1/decide/batch", json={"accounts": [OK, OK | bad]})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "accounts", 1, *loc], bad
        r = c.post("/v1/decide/batch", json={"accounts": [OK] * (MAX_BATCH + 1)})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "accounts"]  # over maxItems: 422, not 413


def _schemathesis(url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``schemathesis run --checks all`` as a new user would run it, bounded in examples (not time)."""
    st = Path(sys.executable).parent / "schemathesis"
    cmd = [str(st), "run", url + "/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1", "--workers", "1"]
    # run in a scratch folder: schemathesis keeps a cache in its working directory
    return subprocess.run([*cmd, "--exclude-path", "/v1/admin/reload", *extra], capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rule", "learned"])
def test_schemathesis_with_every_check_passes_against_the_served_artifact(artifact, learned_artifact, kind, tmp_path):
    from experiments.served import serving

    token = tmp_path / "token"
    token.write_text("s3cret")
    with serving(str(artifact if kind == "rule" else learned_artifact), "--token-file", str(token)) as url:
        run = _schemathesis(url, tmp_path, "--header", "Authorization: Bearer s3cret")
    assert run.returncode == 0, run.stdout[-4000:]
    generated = [line for line in run.stdout.splitlines() if " generated" in line]
    assert generated and int(generated[-1].split()[0]) >= 200, run.stdout[-2000:]  # it really sent a variety of requests


def test_live_server_under_concurrent_load_loses_no_request_and_logs_every_decision(artifact, tmp_path):
    from experiments.served import serving

    log = tmp_path / "live.jsonl"
    with serving(str(artifact), "--decision-log", str(log)) as url:
        n_threads, per_thread = 16, 25
        statuses: list[int] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            for j in range(per_thread):
                req = urllib.request.Request(
                    url + "/v1/decide", data=json.dumps(OK | {"account_id": f"T{k}-{j}"}).encode(), headers={"content-type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=10) as r, lock:
                    statuses.append(r.status)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses.count(200) == n_threads * per_thread
    # leaving the block stopped the server with SIGTERM: a clean shutdown flushes the log
    ids = {json.loads(x)["account_id"] for x in log.read_text().splitlines()}
    assert len(ids) == n_threads * per_thread


@pytest.fixture(scope="module")
def challenger_artifact(tmp_path_factory):
    return export("segment_journeys", tmp_path_factory.mktemp("art") / "segment_journeys", eval_debtors=200)


def test_challenger_share_is_respected_and_sticky_and_every_log_line_names_its_arm(artifact, challenger_artifact, tmp_path):
    from policies.runtime import load

    share, n = 0.1, 20_000
    log = tmp_path / "cc.jsonl"
    app = create_app(artifact, decision_log=log, challenger=challenger_artifact, challenger_share=share, salt="s1")
    versions = {"champion": load(artifact).version, "challenger": load(challenger_artifact).version}
    arms: dict[str, str] = {}
    with TestClient(app) as c:
        for day in (0, 1):  # the same accounts on two days, in a different state
            for start in range(0, n, MAX_BATCH):
                accounts = [OK | {"account_id": f"acc-{i}", "day": day, "dpd": 12 + day} for i in range(start, start + MAX_BATCH)]
                r = c.post("/v1/decide/batch", json={"accounts": accounts})
                assert r.status_code == 200
                for d in r.json()["decisions"]:
                    assert arms.setdefault(d["account_id"], d["arm"]) == d["arm"]  # sticky across days
        one = c.post("/v1/decide", json=OK | {"account_id": "acc-7"}).json()
        assert one["arm"] == arms["acc-7"]
        policy = c.get("/v1/policy").json()
        missing = c.post("/v1/decide", json={k: v for k, v in OK.items() if k != "account_id"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "account_id"]
    k = sum(a == "challenger" for a in arms.values())
    sd = (n * share * (1 - share)) ** 0.5
    assert abs(k - n * share) < 4 * sd, k  # binomial: 2,000 expected, sd 42
    assert policy["arms"]["challenger"]["policy_id"] == "segment_journeys" and policy["arms"]["challenger"]["share"] == share
    assert policy["arms"]["champion"]["policy_version"] == versions["champion"] and policy["assignment"]["challenger_share"] == share
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 2 * n + 1
    for line in lines:
        arm = line["arm"]
        assert arm == arms[line["account_id"]]
        assert line["assignment_prob"] == (share if arm == "challenger" else 1 - share)
        assert line["policy_version"] == versions[arm] and line["policy_id"] == ("segment_journeys" if arm == "challenger" else "digital_first")
    assert {line["day"] for line in lines} == {0, 1, None}
    # a new salt reshuffles: the two challenger groups overlap about as much as independent draws (share^2)
    reshuffled = {a for a in arms if assignment_unit(a, "s2") < share}
    overlap = len(reshuffled & {a for a, arm in arms.items() if arm == "challenger"})
    assert abs(overlap - n * share * share) < 4 * (n * share * share) ** 0.5 + 1, overlap


def test_a_challenger_decides_with_its_own_policy_and_guardrails(artifact, learned_artifact, tmp_path):
    """The learned challenger's decisions are the ones its artifact makes in process, including the
    compliance reasons, and its log lines carry its probabilities (enough to recompute weights)."""
    from policies.runtime import load

    log = tmp_path / "cc.jsonl"
    learned = load(learned_artifact)
    records = [OK | {"account_id": f"x{i}", "contacts_7d": {"call": i % 9}, "days_since_conversation": i % 10} for i in range(400)]
    with TestClient(create_app(artifact, decision_log=log, challenger=learned_artifact, challenger_share=0.5, salt="s")) as c:
        got = c.post("/v1/decide/batch", json={"accounts": records}).json()["decisions"]
    ours = [(r, d) for r, d in zip(records, got, strict=True) if d["arm"] == "challenger"]
    assert 150 < len(ours) < 250
    for r, d in ours:
        assert {k: v for k, v in d.items() if k not in ("account_id", "arm")} == learned.decide(r).as_dict()
    lines = [json.loads(x) for x in log.read_text().splitlines() if '"challenger"' in x]
    for line in lines:
        p = line["probs"]
        c, w, t, o = (line["action_index"] // 64, line["action_index"] // 16 % 4, line["action_index"] // 4 % 4, line["action_index"] % 4)
        recomputed = p["channel"][0] if c == 0 else p["channel"][c] * p["window"][w] * p["tone"][t] * p["offer"][o]
        assert line["propensity"] == pytest.approx(recomputed, rel=1e-9) or line["propensity"] == 0.0  # 0: the guardrail replaced it


def _metrics(c) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics parsed with prometheus-client's own parser: (sample name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def _value(m, name: str, **labels: str) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_decisions_overrides_and_arms(learned_artifact, challenger_artifact, tmp_path):
    access = tmp_path / "access.jsonl"
    app = create_app(learned_artifact, token="t", challenger=challenger_artifact, challenger_share=0.3, salt="m", access_log=access)
    with TestClient(app, headers={"Authorization": "Bearer t"}) as c:
        before = _metrics(c)
        views = random_views(np.random.default_rng(5), 200)
        accounts = [rec | {"account_id": f"m{i}"} for i, rec in enumerate(records_from_views(views))]
        decisions = c.post("/v1/decide/batch", json={"accounts": accounts}).json()["decisions"]
        for _ in range(3):
            assert c.post("/v1/decide", json=OK | {"dpd": -1}).status_code == 422
        assert c.post("/v1/decide", json=OK, headers={"Authorization": "Bearer wrong"}).status_code == 401
        after = _metrics(c)
    diff = lambda name, **labels: _value(after, name, **labels) - _value(before, name, **labels)
    assert diff("collectrl_requests_total", route="/v1/decide/batch", status="200") == 1
    assert diff("collectrl_requests_total", route="/v1/decide", status="422") == 3
    assert diff("collectrl_requests_total", route="/v1/decide", status="401") == 1
    assert diff("collectrl_request_seconds_count", route="/v1/decide") == 4
    n_challenger = sum(d["arm"] == "challenger" for d in decisions)
    assert 0 < n_challenger < 200
    assert diff("collectrl_arm_assignments_total", arm="challenger") == n_challenger
    assert diff("collectrl_arm_assignments_total", arm="champion") == 200 - n_challenger
    by_channel: dict[str, int] = {}
    for d in decisions:
        by_channel[d["channel"]] = by_channel.get(d["channel"], 0) + 1
    for channel, count in by_channel.items():
        got = sum(v for (name, labels), v in after.items() if name == "collectrl_decisions_total" and ("channel", channel) in labels)
        assert got == count, channel
    overridden = sum(d["reason"] is not None for d in decisions)
    counted = sum(v for (name, _), v in after.items() if name == "collectrl_compliance_overrides_total")
    assert counted == overridden  # (the tiny policies here rarely pick a blocked first choice: labels are tested below)
    lines = [json.loads(x) for x in access.read_text().splitlines()]
    assert [x["status"] for x in lines if x["path"] == "/v1/decide"] == [422, 422, 422, 401]
    assert all(x["duration_ms"] >= 0 and x["method"] in ("GET", "POST") for x in lines)


def test_override_reasons_become_a_small_set_of_metric_labels():
    from policies.compliance import BLOCK_NAMES
    from policies.runtime import _reason_first, _reason_guardrail
    from policies.server import _override_reason

    for block, name in enumerate(BLOCK_NAMES):
        if block == 0:
            continue  # 0 = allowed
        assert _override_reason(_reason_first([6, 0, 3, 0], block)) == name
        assert _override_reason(_reason_guardrail(block)) == f"guardrail:{name}"


def _post(url: str, path: str, body: dict, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json", "authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_hot_reload_under_load_fails_no_request_and_logs_every_decision_against_its_own_version(artifact, challenger_artifact, tmp_path):
    import shutil

    from experiments.served import serving
    from policies.runtime import load

    versions = {"digital_first": load(artifact).version, "segment_journeys": load(challenger_artifact).version}
    tampered = tmp_path / "tampered"
    shutil.copytree(challenger_artifact, tampered)
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["format_version"] = 999
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    token = tmp_path / "token"
    token.write_text("adm1n")
    log = tmp_path / "reload.jsonl"
    answers: list[tuple[int, str, str]] = []  # status, request id, policy id answered
    lock = threading.Lock()
    with serving(str(artifact), "--token-file", str(token), "--decision-log", str(log)) as url:

        def client(k: int) -> None:
            for j in range(40):
                rid = f"r{k}-{j}"
                req = urllib.request.Request(
                    url + "/v1/decide",
                    data=json.dumps(OK | {"account_id": rid}).encode(),
                    headers={"content-type": "application/json", "authorization": "Bearer adm1n", "x-request-id": rid},
                )
                with urllib.request.urlopen(req, timeout=30) as r, lock:
                    answers.append((r.status, rid, json.loads(r.read())["policy_id"]))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        reloads = []
        for i in range(6):  # swap back and forth while the clients run (after every 40 answers), and try a tampered artifact once
            for _ in range(100_000):
                if len(answers) >= 40 * (i + 1):
                    break
                threading.Event().wait(0.002)
            target = challenger_artifact if i % 2 == 0 else artifact
            reloads.append(_post(url, "/v1/admin/reload", {"artifact": str(target)}, "adm1n"))
            if i == 2:
                bad = _post(url, "/v1/admin/reload", {"artifact": str(tampered)}, "adm1n")
        for t in threads:
            t.join(timeout=120)
        refused_without_token = _post(url, "/v1/admin/reload", {"artifact": str(artifact)}, "wrong")
        with urllib.request.urlopen(urllib.request.Request(url + "/v1/policy", headers={"authorization": "Bearer adm1n"})) as r:
            serving_now = json.loads(r.read())["policy_id"]
    assert [status for status, _ in reloads] == [200] * 6
    assert bad[0] == 422 and bad[1]["detail"][0]["loc"] == ["body", "artifact"] and "format version" in bad[1]["detail"][0]["msg"]
    assert refused_without_token[0] == 401
    assert serving_now == "digital_first"  # the last good reload; the tampered one changed nothing
    assert len(answers) == 8 * 40 and all(status == 200 for status, _, _ in answers)
    assert {p for _, _, p in answers} == {"digital_first", "segment_journeys"}  # both versions really answered
    logged = {line["request_id"]: line for line in map(json.loads, log.read_text().splitlines())}
    assert len(logged) == len(answers)
    for _, rid, policy_id in answers:
        line = logged[rid]
        assert line["policy_id"] == policy_id and line["policy_version"] == versions[policy_id], rid


def test_two_workers_log_every_decision_once_share_metrics_and_check_the_token(artifact, tmp_path):
    from experiments.served import serving

    token = tmp_path / "token"
    token.write_text("w0rkers")
    log = tmp_path / "decisions.jsonl"
    n_threads, per_thread = 8, 25
    statuses: list[int] = []
    lock = threading.Lock()
    with serving(str(artifact), "--workers", "2", "--token-file", str(token), "--decision-log", str(log)) as url:

        def client(k: int) -> None:
            for j in range(per_thread):
                status, _ = _post(url, "/v1/decide", OK | {"account_id": f"W{k}-{j}"}, "w0rkers")
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        wrong = [_post(url, "/v1/decide", OK, "nope")[0] for _ in range(10)]
        reload = _post(url, "/v1/admin/reload", {"artifact": str(artifact)}, "w0rkers")
        scrapes = []
        for _ in range(6):  # whichever worker answers, it reports the sum over workers
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                text = r.read().decode()
            scrapes.append(
                sum(
                    float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith('collectrl_requests_total{route="/v1/decide",status="200"}')
                )
            )
    assert statuses == [200] * (n_threads * per_thread)
    assert wrong == [401] * 10 and reload[0] == 409
    assert scrapes == [n_threads * per_thread] * 6
    files = sorted(tmp_path.glob("decisions.jsonl.w*"))
    assert 1 <= len(files) <= 2 and not log.exists()
    ids = [json.loads(x)["account_id"] for f in files for x in f.read_text().splitlines()]  # every line is whole JSON
    assert sorted(ids) == sorted(f"W{k}-{j}" for k in range(n_threads) for j in range(per_thread))  # all, once, flushed on shutdown


def test_workers_each_listen_on_their_own_socket_so_kept_alive_connections_spread(artifact, tmp_path):
    """With one shared listening socket, a burst of new connections could all land on one worker
    and stay there (kept alive); each worker has its own SO_REUSEPORT socket, so the kernel spreads
    them. A worker that dies is replaced, and the others keep answering meanwhile."""
    import http.client
    import signal
    from urllib.parse import urlsplit

    from experiments.served import serving

    log = tmp_path / "access.jsonl"
    with serving(str(artifact), "--workers", "2", "--access-log", str(log)) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        conns = [http.client.HTTPConnection(host, port, timeout=30) for _ in range(24)]  # opened at once, then kept
        for _ in range(3):
            for c in conns:
                c.request("GET", "/healthz")
                assert c.getresponse().read() == b'{"status":"ok"}'
        for c in conns:
            c.close()
    # the logs are flushed at the clean shutdown: both workers answered (all 24 on one: chance 2 / 2**24)
    # (serving() polls /readyz until every worker serves, so only the /healthz lines are counted)
    counts = [sum(json.loads(x)["path"] == "/healthz" for x in f.read_text().splitlines()) for f in tmp_path.glob("access.jsonl.w*")]
    assert len(counts) == 2 and min(counts) > 0 and sum(counts) == 72

    with serving(str(artifact), "--workers", "2", "--access-log", str(tmp_path / "again.jsonl")) as url:
        victim = int(next(tmp_path.glob("again.jsonl.w*")).name.rsplit(".w", 1)[1])
        os.kill(victim, signal.SIGKILL)
        answered = 0
        for _ in range(400):  # bounded in count: until a replacement worker has started
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
                    answered += r.status == 200
            except OSError:
                pass  # a connection queued on the killed worker's socket
            if len(list(tmp_path.glob("again.jsonl.w*"))) == 3:
                break
            threading.Event().wait(0.02)
        assert len(list(tmp_path.glob("again.jsonl.w*"))) == 3
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert r.status == 200 and answered > 0


def test_workers_that_cannot_start_stop_the_server_instead_of_restarting_forever(tmp_path, capfd):
    import socket

    from policies import workers
    from policies.server import CONFIG_ENV

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {CONFIG_ENV: json.dumps({"artifact": str(tmp_path / "gone"), "workers": 2}), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert workers.run(2, "127.0.0.1", port, env) == 1
    err = capfd.readouterr().err
    assert "could not start serving" in err and err.count("starting another") == 0


def test_several_workers_refuse_a_port_in_use_even_by_another_collectrl_serve(artifact):
    import socket

    from experiments.cli import main

    with socket.socket() as taken:  # a plain socket (no SO_REUSEPORT) holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(artifact), "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]) == 1

    from experiments.served import serving

    with serving(str(artifact), "--workers", "2") as url:  # nor does a second server share a running one's port
        port = int(url.rsplit(":", 1)[1])
        assert main(["serve", str(artifact), "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]) == 1


def test_collectrl_serve_champion_challenger_flags(artifact, challenger_artifact, tmp_path):
    from experiments.cli import main
    from experiments.served import serving

    assert main(["serve", "--champion", str(artifact), "--challenger", str(challenger_artifact), "--challenger-share", "1.5"]) == 2
    assert main(["serve", "--champion", str(artifact), "--challenger", str(tmp_path)]) == 2  # not an artifact: refused before binding
    assert main(["serve", "--artifact", str(artifact), "--champion", str(challenger_artifact)]) == 2  # two champions
    assert main(["serve"]) == 2
    log = tmp_path / "cli.jsonl"
    args = [
        "--champion",
        str(artifact),
        "--challenger",
        str(challenger_artifact),
        "--challenger-share",
        "0.5",
        "--salt",
        "cli",
        "--decision-log",
        str(log),
    ]
    with serving(str(artifact), *args) as url:
        arms = {f"c{i}": _post(url, "/v1/decide", OK | {"account_id": f"c{i}"}, "")[1]["arm"] for i in range(60)}
        with urllib.request.urlopen(url + "/v1/policy", timeout=10) as r:
            policy = json.loads(r.read())
    assert arms == {a: "challenger" if assignment_unit(a, "cli") < 0.5 else "champion" for a in arms}
    assert set(arms.values()) == {"champion", "challenger"}
    assert policy["arms"]["challenger"]["share"] == 0.5 and policy["policy_id"] == "digital_first"
    assert len(log.read_text().splitlines()) == 60


def test_sighup_has_every_worker_reload_in_place_without_a_failed_request(artifact, challenger_artifact, tmp_path):
    """With two workers, SIGHUP reloads the replaced artifact in each worker (the same two processes
    serve throughout: two decision-log files); no request fails meanwhile; a tampered artifact is
    refused by both and they keep serving the last good one."""
    import shutil
    import signal

    from experiments.served import serving
    from policies.runtime import load

    versions = {"digital_first": load(artifact).version, "segment_journeys": load(challenger_artifact).version}
    live = tmp_path / "live"
    shutil.copytree(artifact, live)
    log = tmp_path / "d.jsonl"
    answered: list[str] = []

    def refused(url: str) -> str:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            return next((x for x in r.read().decode().splitlines() if x.startswith('collectrl_reloads_total{arm="all",result="refused"}')), "")

    with serving(str(live), "--workers", "2", "--decision-log", str(log)) as url:
        for i in range(10):
            status, body = _post(url, "/v1/decide", OK | {"account_id": f"h{i}"}, "")
            assert status == 200
            answered.append(body["policy_id"])
        shutil.rmtree(live)
        shutil.copytree(challenger_artifact, live)
        os.kill(url.pid, signal.SIGHUP)
        for i in range(2000):  # until both workers answer with the new artifact (bounded in count)
            status, body = _post(url, "/v1/decide", OK | {"account_id": f"s{i}"}, "")
            assert status == 200
            answered.append(body["policy_id"])
            if answered[-20:] == ["segment_journeys"] * 20:
                break
            threading.Event().wait(0.01)
        manifest = json.loads((live / "manifest.json").read_text())
        (live / "manifest.json").write_text(json.dumps(manifest | {"format_version": 999}))
        os.kill(url.pid, signal.SIGHUP)
        for _ in range(500):  # both workers count their refusal once their reload has run
            if refused(url).endswith(" 2.0"):
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError(f"the tampered reload was not refused by both workers: {refused(url)!r}")
        for i in range(20):
            status, body = _post(url, "/v1/decide", OK | {"account_id": f"t{i}"}, "")
            assert status == 200
            answered.append(body["policy_id"])
    assert answered[:10] == ["digital_first"] * 10 and answered[-40:] == ["segment_journeys"] * 40
    files = list(tmp_path.glob("d.jsonl.w*"))
    assert len(files) == 2  # the two workers of the start served every request: none was replaced
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert len(lines) == len(answered)
    assert all(line["policy_version"] == versions[line["policy_id"]] for line in lines)


def test_sighup_on_one_worker_reloads_from_disk_and_refuses_a_tampered_artifact(artifact, challenger_artifact, tmp_path):
    import shutil
    import signal

    from experiments.served import serving

    live = tmp_path / "live"
    shutil.copytree(artifact, live)

    def until(url: str, policy_id: str) -> list[str]:
        seen = []
        for i in range(500):  # bounded in count
            status, body = _post(url, "/v1/decide", OK | {"account_id": f"u{i}"}, "")
            assert status == 200
            seen.append(body["policy_id"])
            if seen[-1] == policy_id:
                break
            threading.Event().wait(0.01)
        return seen

    with serving(str(live)) as url:
        assert until(url, "digital_first")[-1] == "digital_first"
        shutil.rmtree(live)
        shutil.copytree(challenger_artifact, live)
        os.kill(url.pid, signal.SIGHUP)
        assert until(url, "segment_journeys")[-1] == "segment_journeys"
        manifest = json.loads((live / "manifest.json").read_text())
        (live / "manifest.json").write_text(json.dumps(manifest | {"format_version": 999}))
        os.kill(url.pid, signal.SIGHUP)
        for _ in range(200):  # the refusal is counted once the reload has run
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                if 'collectrl_reloads_total{arm="all",result="refused"} 1.0' in r.read().decode():
                    break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the tampered reload was never refused")
        assert _post(url, "/v1/decide", OK, "")[1]["policy_id"] == "segment_journeys"  # still serving the last good one


def test_the_batch_rows_are_byte_for_byte_what_msgspec_writes_for_the_structs():
    """The batch route writes its rows from pre-encoded pieces; they must be exactly the JSON of
    the response Structs, for every kind of value a row can hold."""
    from policies.runtime import ACTION_NAMES, Columns, rounded_probabilities
    from policies.server import _BATCH_ROWS, Alternative, BatchDecisionOut, BatchOut, _encode

    rng = np.random.default_rng(7)
    n = 400
    flat = rng.integers(0, len(ACTION_NAMES), n)
    alt_index = rng.integers(0, len(ACTION_NAMES), (n, 3))
    alt_index[rng.random((n, 3)) < 0.3] = -1  # rows with fewer (or no) alternatives
    alt_index[:5] = -1
    alt_prob = rng.random((n, 3)) ** rng.integers(1, 40, (n, 3))  # tiny, rounded to 0, and ordinary values
    alt_prob[:3, 0] = [1.0, 0.0, 1e-7]
    prop = rng.random(n) ** 9
    prop[:4] = [0.0, 1.0, 1e-300, 0.1 + 0.2]
    reasons = [None, 'blocked: "quoted" \\ reason', "snooze ü", None] * (n // 4)
    ids = [None, "A1", 'a "quoted", comma id', "ü-\n-\u2028"] * (n // 4)
    cols = Columns(np.zeros((n, 4), dtype=np.int64), flat, prop, reasons, alt_index, alt_prob, None)
    rows = _BATCH_ROWS.rows("challenger", cols, ids)
    want = []
    for i in range(n):
        a = ACTION_NAMES[int(flat[i])]
        q = rounded_probabilities(alt_prob[i]).tolist()
        alts = [
            Alternative(b.channel, b.window, b.tone, b.offer, q[m]) for m, x in enumerate(alt_index[i].tolist()) if x >= 0 for b in [ACTION_NAMES[x]]
        ]
        want.append(
            BatchDecisionOut(
                a.channel, a.window, a.window_start, a.window_end, a.tone, a.offer, float(prop[i]), alts, reasons[i], ids[i], "challenger"
            )
        )
    assert rows == [_encode(w) for w in want]
    assert _BATCH_ROWS.body("rid-1", 'p"1', rows) == _encode(BatchOut("rid-1", 'p"1', want))
    # no alternatives column at all (alternatives=False)
    none = Columns(cols.actions[:3], flat[:3], prop[:3], reasons[:3], np.zeros((3, 0), dtype=np.int64), np.zeros((3, 0)), None)
    assert all(b'"alternatives":[]' in r for r in _BATCH_ROWS.rows("champion", none, ids[:3]))

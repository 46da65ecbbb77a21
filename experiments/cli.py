"""The ``collectrl`` command line.

Exit codes: 0 success, 2 bad input (config, flag, file) with a message naming what is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.errors import EXIT_BAD_INPUT, UsageError
from experiments.io import clean_json, write_json
from experiments.resolve import resolve_policy
from sim.config import ConfigError, available_scenarios, load_scenario
from sim.kpis import KPIS, blocked_by_reason, funnel_rates, portfolio_kpis, recovery_curve


def _int_at_least(minimum: int):  # type: ignore[no-untyped-def]
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)
_seed = _int_at_least(0)


def _progress(desc: str, enabled: bool, unit: str = "day"):  # type: ignore[no-untyped-def]
    """A tqdm bar on stderr fed by the runner's (done, total) callback, counting ``unit``s; None when disabled."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    # a terminal redraws ten times a second; a log file gets a line every ten seconds, not one a day
    every = 0.1 if sys.stderr.isatty() else 10.0
    bar = tqdm(total=None, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=every, miniters=1)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))  # redraws at most every mininterval

    return update, bar.close


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """KPIs as a text table, one column per run."""
    names = list(rows)
    width = max(len(k.label) for k in KPIS) + 2
    colw = max(14, *(len(n) + 2 for n in names))
    lines = ["".ljust(width) + "".join(n.rjust(colw) for n in names)]
    for k in KPIS:
        cells = []
        for n in names:
            v = rows[n].get(k.name, float("nan"))
            cells.append(("n/a" if v != v else format(v, k.fmt)).rjust(colw))
        lines.append(k.label.ljust(width) + "".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------ simulate


def run_simulation(args: argparse.Namespace) -> dict[str, Any]:
    from sim.runner import run_portfolio

    sc = load_scenario(args.scenario, args.set or [])
    replay = args.policy.startswith("replay:")
    if replay:  # the history's own contacts on its own accounts (experiments.calibrate)
        from experiments import calibrate

        history, _ = calibrate.open_replay(args.policy)
        args.debtors = history.n_accounts
    else:
        policy = resolve_policy(args.policy)
    update, close = _progress(f"simulate {sc.name}/{args.policy}", not args.no_progress)
    try:
        if replay:
            world = calibrate.replay(sc, history, args.seed, progress=update, record_events=args.out is not None)
        elif args.log_decisions is not None:  # the policy samples with known propensities
            from experiments.decision_log import log_run

            world, _ = log_run(
                sc, args.policy, args.debtors, args.seed, args.log_decisions, epsilon=args.epsilon, horizon_days=args.days, progress=update
            )
        else:
            world = run_portfolio(sc, policy, args.debtors, args.seed, horizon_days=args.days, record_events=args.out is not None, progress=update)
    finally:
        close()
    kpis = portfolio_kpis(world)
    result: dict[str, Any] = {
        "scenario": sc.name,
        "policy": args.policy,
        "debtors": args.debtors,
        "days": args.days or sc.horizon_days,
        "seed": args.seed,
        "overrides": list(args.set or []),
        "simulated_days": world.day,
        "compliance_profile": sc.compliance_profile,
        "kpis": kpis,
        "blocked_by_reason": blocked_by_reason(world),
        "channels": funnel_rates(world),
    }
    if args.out is not None:
        from experiments.plots import recovery_curves
        from sim.history import write_run_accounts

        out = Path(args.out)
        world.ledger.write_parquet(out / "events.parquet")
        write_run_accounts(world, out)
        recovery_curves({args.policy: recovery_curve(world)}, out / "recovery.png", f"{sc.name}: cumulative recovery ({args.debtors:,} debtors)")
        write_json(out / "kpis.json", result)
        result["files"] = [str(out / f) for f in ("events.parquet", "accounts.parquet", "truth.parquet", "recovery.png", "kpis.json")]
    if args.log_decisions is not None:
        result.setdefault("files", []).append(f"{args.log_decisions} (decisions.parquet and the outcomes in the history format)")
    return result


def cmd_simulate(args: argparse.Namespace) -> int:
    result = run_simulation(args)
    if args.json:
        print(json.dumps(clean_json(result["kpis"] | {"scenario": result["scenario"], "policy": result["policy"], "seed": result["seed"]})))
        return 0
    print(
        f"scenario {result['scenario']} | policy {result['policy']} | {result['debtors']:,} debtors | {result['days']} days | seed {result['seed']}"
    )
    print(format_table({result["policy"]: result["kpis"]}))
    blocked = {k: v for k, v in result["blocked_by_reason"].items() if v}
    if blocked:
        print("blocked by reason: " + ", ".join(f"{k} {v:,}" for k, v in blocked.items()))
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on built-in defaults: one portfolio simulated, then the baselines evaluated."""
    from experiments.evaluate import evaluate
    from experiments.plots import recovery_curves
    from experiments.report import terminal_table, write_all
    from sim.runner import run_portfolio

    sc = load_scenario("default")
    out = Path(args.out)
    update, close = _progress("demo: simulate static_ladder", not args.no_progress)
    try:
        world = run_portfolio(sc, resolve_policy("static_ladder"), args.debtors, args.seed, record_events=True, progress=update)
    finally:
        close()
    print(f"collectrl demo: scenario 'default' ({sc.description})\n")
    print(f"1. one portfolio under the static ladder: {args.debtors:,} debtors, seed {args.seed}\n")
    print(format_table({"static_ladder": portfolio_kpis(world)}))
    world.ledger.write_parquet(out / "simulate" / "events.parquet")
    recovery_curves({"static_ladder": recovery_curve(world)}, out / "simulate" / "recovery.png", "default: cumulative recovery, static ladder")

    from agents.train import train

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(
            total=args.train_steps, desc="demo: train maskable_ppo", unit="step", unit_scale=True, file=sys.stderr, mininterval=0.5, leave=False
        )
    try:
        run = train(
            "default",
            "maskable_ppo",
            args.train_steps,
            args.seed,
            out / "runs",
            train_overrides=[f"eval_every_steps={max(args.train_steps // 3, 1)}", "eval_debtors=2000", "select_top=null"],
            progress=(lambda steps, _k: bar.update(max(0, min(steps, args.train_steps) - bar.n))) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    print(f"\n2. a MaskablePPO learner trained for {args.train_steps:,} debtor-days -> {run.root}")

    learned = f"{run.cfg.algo} (trained)"
    baselines = [learned, "static_ladder", "segment_journeys", "digital_first", "oracle", "random", "no_contact"]
    update, close = _progress("demo: evaluate", not args.no_progress)
    try:
        ev = evaluate(
            sc,
            baselines,
            args.debtors,
            list(range(args.seeds)),
            "static_ladder",
            update,
            make=lambda name: resolve_policy(str(run.root) if name == learned else name),
        )
    finally:
        close()
    files = write_all(ev, out / "evaluate")
    print(f"\n3. the learner and the baselines on the same debtors and luck ({args.seeds} seeds)\n")
    print(terminal_table(ev))
    print(f"\nwrote {out / 'simulate'} (events.parquet, recovery.png)")
    print(f"wrote {len(files)} files in {out / 'evaluate'} (report.md, kpis.csv, kpis.json, figures)")

    from agents.export import export
    from policies.runtime import load

    artifact = export(str(run.root), out / "artifact", eval_debtors=2000, overwrite=True)
    account = {
        "account_id": "demo-1",
        "balance_eur": 1450.0,
        "outstanding_eur": 1450.0,
        "dpd": 18,
        "days_in_collections": 4,
        "channels_on_file": ["sms", "email", "call"],
        "app_user": False,
    }
    decision = load(artifact).decide(account)
    print(f"\n4. the learner exported to {artifact} (model.onnx + manifest.json); one decision from the artifact:")
    print(f"   account {json.dumps(account)}")
    print(f"   -> {json.dumps(decision.as_dict(), indent=None)}")
    return 0


MAX_SEED_COUNT = 100


def _seeds(text: str) -> list[int]:
    """``5`` -> seeds 0..4; ``3,7,11`` -> those seeds; ``1000,`` -> seed 1000 alone."""
    try:
        if "," in text:
            seeds = [int(x) for x in text.split(",") if x.strip()]
            if not seeds:
                raise ValueError
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds (e.g. 5) or a list (e.g. 0,3,7), got {text!r}") from None
    if "," not in text and len(seeds) > MAX_SEED_COUNT:
        # almost always meant as one seed: `--seeds 1000` would otherwise run a thousand evaluations
        raise argparse.ArgumentTypeError(
            f"--seeds {text} asks for {text} seeds (0..{int(text) - 1}); for seed {text} alone write '{text},', "
            f"for a few seeds list them (e.g. {text},{int(text) + 1}); at most {MAX_SEED_COUNT} by count"
        )
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0, got {text!r}")
    return seeds


def run_evaluation(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from experiments.evaluate import evaluate
    from experiments.labels import assign_labels

    sc = load_scenario(args.scenario, args.set or [])
    specs = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not specs:
        raise UsageError("--policies is empty; give registered policy ids (or run directories) separated by commas")
    # a run or artifact directory is shown by a short label (its algorithm and time), the path in a footnote
    refs = list(dict.fromkeys([*specs, args.champion]))
    try:
        by_name = dict(zip(assign_labels(refs), refs, strict=True))
    except ValueError as e:
        raise UsageError(str(e)) from None
    label_of = {ref: label for label, ref in by_name.items()}
    for spec in by_name.values():
        resolve_policy(spec)
    update, close = _progress(f"evaluate {sc.name}", not args.no_progress)
    try:
        ids, champion = [label_of[p] for p in specs], label_of[args.champion]
        sources = {label: ref for label, ref in by_name.items() if label != ref}
        return evaluate(
            sc, ids, args.debtors, args.seeds, champion, update, make=lambda name: resolve_policy(by_name.get(name, name)), sources=sources
        )
    finally:
        close()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from experiments.report import terminal_table, write_all

    ev = run_evaluation(args)
    files = write_all(ev, Path(args.out)) if args.out else []
    if args.json:
        print(json.dumps(clean_json(ev.to_json())))
        return 0
    print(terminal_table(ev))
    for f in files:
        print(f"wrote {f}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from agents.train import DEFAULT_ALGO, load_train_config, read_run_config, train

    if args.resume is None:
        algo = args.algo or DEFAULT_ALGO
        cfg = load_train_config(algo, args.train_set or [])  # clear errors before anything starts
        load_scenario(args.scenario, args.set or [])
        total = args.timesteps or cfg.timesteps
    else:
        if args.algo or args.train_set or args.set:
            raise UsageError("--resume continues a run with its own algorithm and configs; drop --algo, --train-set and --set")
        saved = read_run_config(Path(args.resume))
        algo = saved["algo"]
        total = args.timesteps or int(saved["timesteps"])
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            desc=f"train {algo}" + (" (resumed)" if args.resume else ""),
            unit="step",
            unit_scale=True,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
        )
    shown: dict[str, float] = {}

    def progress(steps: int, kpis: dict[str, float]) -> None:
        if bar is None:
            return
        if kpis and kpis != shown:
            shown.clear()
            shown.update(kpis)
            bar.set_postfix(eval_net=f"{kpis['net']:.1f}", score=f"{kpis['score']:.2f}", refresh=False)
        bar.update(max(0, min(steps, total) - bar.n))  # tqdm redraws at most every mininterval

    try:
        run = train(
            args.scenario,
            algo,
            args.timesteps,
            args.seed,
            args.out,
            args.set or [],
            args.train_set or [],
            args.resume,
            progress,
            selecting=None if args.no_progress else lambda msg: print(msg, file=sys.stderr),
        )
    finally:
        if bar is not None:
            bar.close()
    last = run.curve[-1]
    best = max(run.curve, key=lambda r: r["net_value_per_debtor"])
    ref = run.reference_values()
    print(f"run directory: {run.root}")
    if run.stopped_early is not None:
        print(f"stopped early at {run.stopped_early:,} debtor-days: {run.cfg.patience_evals} evaluations in a row set no new best (patience_evals)")
    print(f"evaluation population ({run.cfg.eval_debtors:,} debtors, seed {run.cfg.eval_seed}), net value per debtor (EUR):")
    print(f"  static_ladder {ref.static_ladder:10.2f}\n  oracle        {ref.oracle:10.2f}")
    print(
        f"  learned       {last['net_value_per_debtor']:10.2f}  at {int(last['timesteps']):,} steps, {last.get('wall_seconds', 0) / 60:.1f} min "
        f"(normalised score {last['normalised_score']:.3f})"
    )
    print(
        f"  best          {best['net_value_per_debtor']:10.2f}  at {int(best['timesteps']):,} steps, {best.get('wall_seconds', 0) / 60:.1f} min "
        f"(normalised score {best['normalised_score']:.3f})" + ("" if run.selection else " -> best/model.zip")
    )
    if run.selection:
        c = run.cfg
        print(f"selection population ({c.select_debtors:,} debtors, seed {c.select_seed}), the {len(run.selection)} best-evaluated models:")
        chosen = max(run.selection, key=lambda r: (r["net_value_per_debtor"], -r["timesteps"]))
        for r in run.selection:
            mark = "  -> best/model.zip" if r is chosen else ""
            print(f"  at {int(r['timesteps']):>10,} steps: {r['net_value_per_debtor']:10.2f} (normalised score {r['normalised_score']:.3f}){mark}")
    return 0


def cmd_bandit(args: argparse.Namespace) -> int:
    from agents.regret import bandit_regret, plot_regret

    sc = load_scenario(args.scenario, args.set or [])
    res = bandit_regret(sc, args.debtors, args.seed, args.stream_days)
    quarters = res.by_quarter()
    result = {"scenario": sc.name, "debtors": args.debtors, "stream_days": args.stream_days, "seed": args.seed, "quarters": quarters}
    if args.out:
        out = Path(args.out)
        plot_regret(res, out / "regret.png", f"{sc.name}: the bandit learns over a stream of {args.debtors:,} debtors")
        write_json(out / "regret.json", result)
    if args.json:
        print(json.dumps(clean_json(result)))
        return 0
    print(f"linear_ts bandit on a stream of {args.debtors:,} '{sc.name}' debtors arriving over {args.stream_days} days (seed {args.seed})")
    print("regret vs the oracle per debtor (EUR), by quarter of the stream:")
    for i, q in enumerate(quarters, 1):
        print(f"  quarter {i}: bandit {q['bandit_regret_per_debtor']:8.1f} +- {q['ci95']:.1f}   static_ladder {q['ladder_regret_per_debtor']:8.1f}")
    if args.out:
        print(f"wrote {Path(args.out) / 'regret.png'} and regret.json")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from experiments.leaderboard import PROTOCOL_DEBTORS, PROTOCOL_SEEDS, leaderboard, markdown

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in scenarios:
        load_scenario(name)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    log = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    table = leaderboard(scenarios, algos, args.timesteps, Path(args.runs), args.debtors or PROTOCOL_DEBTORS, tuple(args.seeds or PROTOCOL_SEEDS), log)
    md = markdown(table)
    out = Path(args.out)
    from experiments.io import atomic_write

    atomic_write(out / "leaderboard.md", lambda p: p.write_text(md))
    write_json(out / "leaderboard.json", table)
    if args.json:
        print(json.dumps(clean_json(table)))
    else:
        print(md)
        print(f"wrote {out / 'leaderboard.md'} and leaderboard.json")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from agents.tune import tune

    load_scenario(args.scenario)
    result = tune(args.scenario, args.algo, args.trials, args.timesteps_per_trial, Path(args.out), args.seed, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(clean_json(result)))
        return 0
    print(f"study {result['study']}: {result['trials']} trials, best evaluation net value {result['best_value']:.2f} EUR per debtor")
    for k, v in result["best_params"].items():
        print(f"  {k}: {v}")
    print(f"wrote {Path(result['study']) / 'best_params.yaml'} (copy it to configs/training/ to make it the default)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from agents.export import export

    try:
        out = export(args.source, args.out, args.scenario, args.eval_debtors, args.overwrite)
    except ValueError as e:
        raise UsageError(str(e)) from None
    manifest = json.loads((out / "manifest.json").read_text())
    ev = manifest["evaluation"]
    print(f"exported {manifest['policy_id']} ({manifest['kind']}, {manifest['algo']}) to {out}")
    print(f"  files: {', '.join(sorted(manifest['files']) or ['manifest only'])} + manifest.json")
    print(f"  compliance profile {manifest['compliance_profile']}; evaluation on {ev['debtors']:,} '{ev['scenario']}' debtors:")
    print(f"  net value per debtor {ev['kpis']['net_value_per_debtor']:.2f} EUR (static ladder {ev['static_ladder_net_value_per_debtor']:.2f})")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from experiments.decide import decide_file
    from policies.runtime import ArtifactError, load

    try:
        fn = load(args.artifact)
    except ArtifactError as e:
        raise UsageError(str(e)) from None
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="decide", unit="row", unit_scale=True, file=sys.stderr, mininterval=0.5)
    try:
        result = decide_file(
            fn,
            Path(args.input),
            Path(args.output),
            (lambda n: bar.update(n)) if bar is not None else None,
            Path(args.log_decisions) if args.log_decisions else None,
        )
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    print(f"scored {result['scored']:,} rows -> {result['output']}")
    if result.get("decision_log"):
        print(f"decision log (policy {fn.policy_id} v{fn.version}, propensities and probabilities) -> {result['decision_log']}")
    elif "decision_log" in result:
        print("no decision log written: no row could be scored", file=sys.stderr)
    if result["bad_rows"]:
        print(f"{result['bad_rows']:,} bad rows were skipped (all listed in {Path(args.output).stem}.errors.csv):", file=sys.stderr)
        for bad in result["errors"]:
            print(f"  row {bad['row']}: {bad['reason']}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from policies.runtime import ArtifactError, load
    from policies.server import create_app

    named = {p for p in (args.artifact, args.artifact_flag, args.champion) if p}
    champion = next(iter(named), None)
    if champion is None or len(named) > 1:
        raise UsageError("serve needs one champion artifact: `collectrl serve ART` or `collectrl serve --champion ART`")
    if args.challenger is not None and not 0.0 < args.challenger_share < 1.0:
        raise UsageError(f"--challenger-share must be between 0 and 1 (exclusive), got {args.challenger_share}")
    for path in (champion, args.challenger):
        try:
            if path is not None:
                load(path)  # refuse a bad artifact before binding a port
        except ArtifactError as e:
            raise UsageError(str(e)) from None
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as e:
            raise UsageError(f"cannot read --token-file {args.token_file}: {e.strerror}") from None
        if not token:
            raise UsageError(f"--token-file {args.token_file} is empty")
    for flag, path in (("--decision-log", args.decision_log), ("--access-log", args.access_log)):
        folder = Path(path).parent if path else None
        if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise UsageError(f"{flag} {path}: the folder {folder} does not exist or is not writable; create it or choose another path")
    settings = {
        "artifact": champion,
        "decision_log": args.decision_log,
        "challenger": args.challenger,
        "challenger_share": args.challenger_share if args.challenger else 0.0,
        "salt": args.salt,
        "access_log": args.access_log,
    }
    arms = f"{champion} ({1 - args.challenger_share:.0%}) and challenger {args.challenger}" if args.challenger else champion
    print(f"serving {arms} on http://{args.host}:{args.port} with {args.workers} worker(s) (OpenAPI at /openapi.json)", file=sys.stderr)
    if args.workers == 1:
        uvicorn.run(create_app(token=token, **settings), host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0
    import tempfile

    from policies import workers
    from policies.server import CONFIG_ENV

    # workers are fresh processes: they read the settings (and the token from its file) themselves, and
    # share their metrics through a directory that prometheus-client's multiprocess mode sums
    with tempfile.TemporaryDirectory(prefix="collectrl-metrics-") as metrics_dir:
        env = {CONFIG_ENV: json.dumps(settings | {"workers": args.workers, "token_file": args.token_file}), "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        return workers.run(args.workers, args.host, args.port, env)


def cmd_experiment(args: argparse.Namespace) -> int:
    from experiments.whatif import load_spec, run_experiment
    from experiments.whatif_report import analyse, write_report

    if args.action == "run":
        spec = load_spec(args.target)
        out = Path(args.out or f"runs/experiments/{Path(args.target).stem}")
        update, close = _progress(f"experiment {Path(args.target).stem}", not args.no_progress, unit="cell")
        try:
            r = run_experiment(spec, out, args.workers, args.backend, args.ray_address, progress=(lambda d, t: update(d, t)) if update else None)
        finally:
            close()
        print(f"{r['cells']} cells: {r['ran']} run now, {r['skipped']} already done, {len(r['failed'])} failed -> {out}")
        for key, err in r["failed"].items():
            print(f"  FAILED {key}: {err.strip().splitlines()[-1]} (run again to retry)", file=sys.stderr)
        write_report(out)
        print(f"wrote {out / 'report.html'} and report.md")
        return 1 if r["failed"] else 0
    out = Path(args.target)
    if not (out / "spec.json").exists():
        raise UsageError(f"{out} is not an experiment directory (no spec.json); run `collectrl experiment run SPEC` first")
    files = write_report(out)
    table = analyse(out)
    print("\n".join(table["summary"]) or "(no variant besides the base)")
    print(f"wrote {', '.join(str(f) for f in files[:2])} and {len(files) - 2} figures")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.action in ("fit", "check", "transfer", "rank"):
        from experiments import calibrate

        return calibrate.command(args)
    from sim.calibration import measure_all

    names = available_scenarios() if args.scenario == "all" else [args.scenario]
    report, failed = [], 0
    for name in names:
        sc = load_scenario(name, args.set or [])
        for m in measure_all(sc, args.debtors, args.seed):
            t = m.target
            bound = f"{t.target:g} +- {t.tolerance:g}" if t.check == "near" else f">= {t.target - t.tolerance:g}"
            report.append(
                {"scenario": name, "metric": t.metric, "value": m.value, "target": bound, "passed": m.passed, "figure": t.figure, "source": t.source}
            )
            failed += not m.passed
    if args.json:
        print(json.dumps(clean_json(report)))
    else:
        for r in report:
            status = "PASS" if r["passed"] else "FAIL"
            print(f"{status}  {r['scenario']:<11} {r['metric']:<28} {r['value']:8.3f}  target {r['target']:<14} {r['figure']}")
    return 1 if failed else 0


def cmd_policies(args: argparse.Namespace) -> int:
    import policies

    for pid in policies.registered():
        version, doc = policies.base.describe(pid)
        print(f"{pid:<18} v{version}  {doc}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    for name in available_scenarios():
        sc = load_scenario(name)
        print(f"{name:<12} {sc.description}")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from experiments import perf

    if args.what == "sim":
        result = perf.perf_sim(args.scenario, args.debtors or 200_000, args.days, args.seed)
    elif args.what == "env":
        result = perf.perf_env(args.scenario, args.slots, args.seconds, args.seed, args.rounds or 9)
    elif args.what == "train":
        result = perf.perf_train(args.scenario, args.n_envs, args.timesteps, args.seed, args.rounds or 8)
    elif args.what == "experiment":
        result = perf.perf_experiment(args.debtors or 8000)
    elif args.what == "calibrate":
        result = perf.perf_calibrate(args.scenario, args.debtors or 100_000, args.days, args.seed)
    elif args.what == "ope":
        result = perf.perf_ope(args.scenario, args.debtors or 20_000, args.days, args.seed)
    else:
        if not args.artifact:
            raise UsageError("perf serve needs --artifact DIR (an exported learned policy)")
        result = perf.perf_serve(args.artifact, int(args.seconds), args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:<30} {v}")
    return 0


# ------------------------------------------------------------------ history


def cmd_dataset(args: argparse.Namespace) -> int:
    from experiments.dataset import make_dataset

    update, close = _progress(f"dataset {args.scenario} / {args.policy}", not args.no_progress, unit="debtor")
    try:
        summary = make_dataset(
            args.scenario,
            args.policy,
            args.episodes,
            Path(args.out),
            epsilon=args.epsilon,
            seed=args.seed,
            name=args.name,
            ref_debtors=args.ref_debtors,
            progress=None if update is None else (lambda done: update(done, args.episodes)),
        )
    finally:
        close()
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        print(
            f"wrote {summary.dataset_id} under {args.out}: {summary.episodes:,} episodes, {summary.steps:,} steps; mean return "
            f"{summary.mean_return:.2f} EUR = normalised score {summary.normalised_score:.3f} (static ladder {summary.ref_min_score:.2f}, "
            f"oracle {summary.ref_max_score:.2f}); smallest propensity {summary.min_propensity:.2g}\n"
            f"load it with: MINARI_DATASETS_PATH={args.out} python -c \"import minari; print(minari.load_dataset('{summary.dataset_id}'))\""
        )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from experiments.history import HistoryUsageError, export_run
    from sim.history import validate

    if args.action == "export":
        if not args.out:
            raise UsageError("history export needs --out DIR (the history folder to write)")
        try:
            h = export_run(args.source, args.out, args.format)
        except HistoryUsageError as e:
            raise UsageError(str(e)) from None
        counts = ", ".join(f"{len(t['account_id']):,} {name}" for name, t in h.tables().items())
        print(f"wrote {args.out}: {counts} over {h.days} days ({args.format})")
        return 0
    report, _ = validate(args.source)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.format())
    return 0 if report.ok else EXIT_BAD_INPUT


# ------------------------------------------------------------------ off-policy evaluation


def cmd_ope(args: argparse.Namespace) -> int:
    from experiments import ope
    from experiments.io import atomic_write

    if args.action == "bench":
        sc = load_scenario(args.scenario, args.set or [])
        targets = tuple(args.policy or ope.BENCH_TARGETS) + tuple(args.learner or ())
        result = ope.bench(
            sc,
            logger=args.logger,
            epsilon=args.epsilon,
            targets=targets,
            repetitions=args.repetitions,
            debtors=args.debtors,
            horizon_days=args.days,
            seed=args.seed,
            bootstrap=args.bootstrap,
            reward_days=args.reward_days,
            truth_debtors=args.truth_debtors,
            progress=not args.no_progress,
        )
        if args.out:
            write_json(Path(args.out) / "bench.json", result)
            atomic_write(Path(args.out) / "bench.md", lambda tmp: tmp.write_text(ope.bench_markdown(result)))
        print(json.dumps(clean_json({k: v for k, v in result.items() if k != "rows"})) if args.json else ope.bench_markdown(result))
        return 0
    if not args.logs:
        raise UsageError("ope needs --logs DIR (a folder written by `collectrl simulate --log-decisions`, or a server log with outcomes)")
    out = Path(args.out) if args.out else Path(args.logs) / "ope"
    summary = ope.run_ope(
        args.logs,
        args.policy or [],
        out,
        champion=args.champion,
        estimator=args.estimator,
        reward_days=args.reward_days,
        bootstrap=args.bootstrap,
        seed=args.seed,
        profile=args.profile,
    )
    if args.json:
        print(json.dumps(clean_json(summary)))
        return 0
    print((out / "report.md").read_text().split("## Verdict", 1)[1].strip())
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'ope.json'}")
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collectrl", description="Learn debt-collection contact strategies on a simulated debtor population.")
    sub = p.add_subparsers(dest="command", required=True)

    def scenario_args(sp: argparse.ArgumentParser, seed: bool = True) -> None:
        sp.add_argument("--scenario", default="default", help=f"preset ({', '.join(available_scenarios())}) or a path to a .yaml file")
        sp.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a config value by dotted path, e.g. channels.sms.cost_eur=0.10 (repeatable)"
        )
        if seed:
            sp.add_argument("--seed", type=_seed, default=0)

    s = sub.add_parser("simulate", help="simulate a portfolio under one policy and print its KPIs")
    scenario_args(s)
    s.add_argument("--policy", default="static_ladder", help="registered policy id (e.g. static_ladder, random, no_contact)")
    s.add_argument("--debtors", type=_positive_int, default=10_000)
    s.add_argument("--days", type=_positive_int, default=None, help="horizon in days per debtor (default: the scenario's)")
    s.add_argument("--out", default=None, help="directory for events.parquet, recovery.png and kpis.json")
    s.add_argument("--json", action="store_true", help="print the KPIs as one JSON object")
    s.add_argument(
        "--log-decisions", default=None, metavar="DIR", help="write each decision with its propensities, and the outcomes (history format), to DIR"
    )
    s.add_argument("--epsilon", type=float, default=0.0, help="--log-decisions: share of uniformly random allowed actions mixed into the policy")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="the main job on built-in defaults")
    d.add_argument("--debtors", type=_positive_int, default=10_000)
    d.add_argument("--seed", type=_seed, default=0)
    d.add_argument("--seeds", type=_positive_int, default=3, help="seeds of the evaluation")
    d.add_argument("--train-steps", type=_positive_int, default=400_000, help="debtor-days of training for the learner")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser("evaluate", help="compare policies with confidence intervals and paired tests (common random numbers)")
    scenario_args(e, seed=False)
    e.add_argument("--policies", default="static_ladder,segment_journeys,digital_first,oracle,random", help="registered policy ids, comma separated")
    e.add_argument("--debtors", type=_positive_int, default=20_000)
    e.add_argument(
        "--seeds", type=_seeds, default=list(range(5)), help="number of seeds (5 = seeds 0..4) or a list like 0,3,7 (a single seed: 1000,)"
    )
    e.add_argument("--champion", default="static_ladder", help="the running policy the others are compared against")
    e.add_argument("--out", default=None, help="directory for report.md, kpis.csv, kpis.json and figures")
    e.add_argument("--json", action="store_true", help="print the evaluation as one JSON object")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train a learner on the batched debtor world")
    scenario_args(t)
    t.add_argument("--algo", choices=("maskable_ppo", "ppo", "a2c", "dqn"), default=None, help="the learner (default: maskable_ppo)")
    t.add_argument(
        "--timesteps",
        type=_positive_int,
        default=None,
        help="debtor-days of experience (default: the algorithm's config; with --resume: the run's own length)",
    )
    t.add_argument("--out", default="runs", help="parent directory of the run directory")
    t.add_argument("--train-set", action="append", metavar="KEY=VALUE", help="override a training hyperparameter, e.g. learning_rate=1e-4")
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    bd = sub.add_parser("bandit", help="the contextual bandit learning online: cumulative regret vs the oracle over a stream of debtors")
    scenario_args(bd)
    bd.add_argument("--debtors", type=_positive_int, default=20_000)
    bd.add_argument("--stream-days", type=_positive_int, default=240, help="debtors arrive over this many days")
    bd.add_argument("--out", default=None, help="directory for regret.png and regret.json")
    bd.add_argument("--json", action="store_true")
    bd.set_defaults(func=cmd_bandit)

    ex = sub.add_parser("export", help="export a run directory or a rule policy as a servable artifact (model.onnx + manifest.json)")
    ex.add_argument("source", help="a training run directory, or a registered rule policy id")
    ex.add_argument("--out", required=True, help="the artifact directory to create, e.g. artifacts/ppo_default")
    ex.add_argument(
        "--scenario", default="default", help="for rule policies: the scenario whose compliance profile and evaluation go in the manifest"
    )
    ex.add_argument("--eval-debtors", type=_positive_int, default=5000)
    ex.add_argument("--overwrite", action="store_true")
    ex.set_defaults(func=cmd_export)

    dc = sub.add_parser("decide", help="score accounts from CSV or Parquet with an artifact; decisions as Parquet")
    dc.add_argument("artifact")
    dc.add_argument("--input", required=True, help="accounts.csv or accounts.parquet (one account per row)")
    dc.add_argument("--output", required=True, help="decisions.parquet")
    dc.add_argument(
        "--log-decisions",
        default=None,
        metavar="DIR",
        help="also write DIR/decisions.parquet, the decision log `collectrl ope` reads (rows need account_id and day)",
    )
    dc.add_argument("--no-progress", action="store_true")
    dc.set_defaults(func=cmd_decide)

    sv = sub.add_parser("serve", help="serve an artifact over HTTP (FastAPI on uvicorn), optionally with a challenger")
    sv.add_argument("artifact", nargs="?", default=None, help="the champion artifact (or --champion)")
    sv.add_argument("--champion", default=None, help="the champion artifact directory")
    sv.add_argument("--artifact", dest="artifact_flag", default=None, help="the same as --champion")
    sv.add_argument("--challenger", default=None, help="a challenger artifact, deciding for --challenger-share of the accounts")
    sv.add_argument("--challenger-share", type=float, default=0.1, help="share of accounts (by salted hash of account_id) for the challenger")
    sv.add_argument("--salt", default="", help="the assignment salt: a new salt reshuffles which accounts the challenger gets")
    sv.add_argument("--access-log", default=None, help="append one JSON line per HTTP request to this file")
    sv.add_argument("--workers", type=_int_at_least(1), default=1, help="worker processes; each writes its own logs, FILE.w<pid>")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_int_at_least(1), default=8000)
    sv.add_argument("--token-file", default=None, help="a file holding the bearer token clients must send")
    sv.add_argument("--decision-log", default=None, help="append every decision as one JSON line to this file")
    sv.set_defaults(func=cmd_serve)

    xp = sub.add_parser("experiment", help="what-if experiments: run a spec's grid, or report on a run")
    xp.add_argument("action", choices=("run", "report"))
    xp.add_argument("target", help="run: a spec (configs/experiments/NAME.yaml or NAME); report: the experiment directory")
    xp.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="local processes, or Ray (a local Ray is started unless --ray-address)"
    )
    xp.add_argument("--workers", type=_positive_int, default=1, help="worker processes (local) or CPUs of a local Ray")
    xp.add_argument("--ray-address", default=None, help="join an existing Ray cluster, e.g. ray://head:10001 or auto")
    xp.add_argument("--out", default=None, help="run: the experiment directory (default runs/experiments/NAME)")
    xp.add_argument("--no-progress", action="store_true")
    xp.set_defaults(func=cmd_experiment)

    tn = sub.add_parser("tune", help="tune a learner's hyperparameters with Optuna (resumable: the study is stored in SQLite)")
    tn.add_argument("--scenario", default="default")
    tn.add_argument("--algo", choices=("maskable_ppo", "ppo", "a2c", "dqn"), default="maskable_ppo")
    tn.add_argument("--trials", type=_positive_int, default=40)
    tn.add_argument("--timesteps-per-trial", type=_positive_int, default=400_000)
    tn.add_argument("--seed", type=_seed, default=0)
    tn.add_argument("--out", default="runs/tune")
    tn.add_argument("--json", action="store_true")
    tn.set_defaults(func=cmd_tune)

    lb = sub.add_parser("leaderboard", help="train (or reuse) every learner and score every policy on every preset (fixed protocol)")
    lb.add_argument("--scenarios", default="default,telecom,late_stage")
    lb.add_argument("--algos", default="maskable_ppo,ppo,a2c,dqn", help="learners to train or reuse")
    lb.add_argument("--timesteps", type=_positive_int, default=None, help="training debtor-days per learner (default: each learner's shipped config)")
    lb.add_argument("--runs", default="runs/leaderboard", help="where learner runs are kept and reused")
    lb.add_argument("--out", default="runs/leaderboard", help="where leaderboard.md and leaderboard.json go")
    lb.add_argument("--debtors", type=_positive_int, default=None, help="override the protocol's debtors (not comparable then)")
    lb.add_argument("--seeds", type=_seeds, default=None, help="override the protocol's seeds (not comparable then)")
    lb.add_argument("--json", action="store_true")
    lb.set_defaults(func=cmd_leaderboard)

    c = sub.add_parser(
        "calibrate",
        help="figures: check a preset against the published figures it claims (exit 1 on a miss); fit: a scenario fitted to a history; "
        "check: known-truth recovery of the fit; transfer: learners trained on fitted and true worlds, valued on the true one; "
        "rank: policies on a fitted scenario under the fit's uncertainty",
    )
    c.add_argument("action", nargs="?", choices=("figures", "fit", "check", "transfer", "rank"), default="figures")
    c.add_argument("--scenario", default="all", help="figures: a preset, a .yaml path, or 'all'; rank: the fitted scenario .yaml")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.add_argument("--debtors", type=_positive_int, default=20_000, help="figures: debtors; check, transfer, rank: debtors of each policy evaluation")
    c.add_argument("--seed", type=_seed, default=0)
    c.add_argument("--json", action="store_true")
    c.add_argument("--history", default=None, help="fit: the history folder")
    c.add_argument("--base", default="default", help="fit, check: the preset the fitted scenario extends")
    c.add_argument(
        "--out",
        default=None,
        help="fit: the scenario .yaml to write (its report goes beside it); check: a folder for check.json; "
        "transfer: a folder for the worlds, the training runs and transfer.json; rank: a folder for rank.md, rank.png and rank.json",
    )
    c.add_argument("--logging-policy", default=None, help="fit: the policy that produced the history, if known (else its contacts are replayed)")
    c.add_argument("--replicates", type=_positive_int, default=2, help="fit: simulations pooled per step")
    c.add_argument("--workers", type=_positive_int, default=1, help="fit: workers for the replicates of each step")
    c.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="fit: local processes, or Ray tasks (a local Ray unless --ray-address)"
    )
    c.add_argument("--ray-address", default=None, help="fit: join this Ray cluster instead of starting a local one")
    c.add_argument(
        "--learner", action="append", help="check: a trained learner (run or artifact directory) valued on the fitted and true worlds (repeatable)"
    )
    c.add_argument("--perturbations", type=_positive_int, default=None, help="check: perturbed worlds (default 20); transfer: (default 2)")
    c.add_argument("--accounts", type=_positive_int, default=50_000, help="check, transfer: accounts of each simulated history")
    c.add_argument("--explore-share", type=float, default=0.05, help="check, transfer: share of random allowed actions of the logging ladder")
    c.add_argument("--timesteps", type=_positive_int, default=None, help="transfer: debtor-days of each training (default: the shipped config's)")
    c.add_argument("--policies", default=None, help="rank: policies, comma-separated (rule names, runs or artifacts; default the rule policies)")
    c.add_argument(
        "--draws",
        type=_nonnegative_int,
        default=None,
        help="rank, check: worlds drawn from the fit's intervals to rank policies under its uncertainty (default 10; check: 0 leaves it out)",
    )
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_calibrate)

    hs = sub.add_parser("history", help="a portfolio's history: export a simulated run into the history format, or validate a folder")
    hs.add_argument("action", choices=("export", "validate"))
    hs.add_argument("source", help="export: a run folder of `collectrl simulate --out` (or its events.parquet); validate: a history folder")
    hs.add_argument("--out", default=None, help="export: the history folder to write")
    hs.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="export: the tables' file format")
    hs.add_argument("--json", action="store_true", help="validate: print the report as JSON")
    hs.set_defaults(func=cmd_history)

    ds = sub.add_parser("dataset", help="a Minari dataset for offline RL: debtors under a logging policy with known propensities")
    ds.add_argument("--scenario", default="default")
    ds.add_argument("--policy", required=True, help="a registered id, a training run directory or an exported artifact")
    ds.add_argument("--episodes", type=_positive_int, default=10_000, help="debtors (one episode each)")
    ds.add_argument("--out", required=True, help="a Minari datasets folder (set MINARI_DATASETS_PATH to it to load)")
    ds.add_argument("--epsilon", type=float, default=0.0, help="share of uniformly random allowed actions (needed for a deterministic policy)")
    ds.add_argument("--name", default=None, help="the dataset's name in collectrl/SCENARIO/NAME-v0 (default: the policy's)")
    ds.add_argument("--ref-debtors", type=_positive_int, default=20_000, help="debtors per seed for the reference scores (the leaderboard's)")
    ds.add_argument("--seed", type=_seed, default=0)
    ds.add_argument("--json", action="store_true")
    ds.add_argument("--no-progress", action="store_true")
    ds.set_defaults(func=cmd_dataset)

    op = sub.add_parser("ope", help="off-policy evaluation of policies on decision logs (or `ope bench`: the estimators checked against the truth)")
    op.add_argument("action", nargs="?", choices=("bench",), help="bench: log, estimate and compare with the simulator's true values")
    op.add_argument("--logs", default=None, help="folder with decisions.parquet / decisions.jsonl and the outcomes (history format)")
    op.add_argument("--policy", action="append", help="policy to evaluate: registered id or exported artifact (repeatable); bench: the targets")
    op.add_argument("--champion", default=None, help="compare with this policy (default: the logging policy's own value)")
    op.add_argument("--estimator", default="dr", help="estimator of the verdict (ips, snips, dm, dr, dr_shrink, wpdis, wdr, fqe)")
    op.add_argument("--reward-days", type=_positive_int, default=14, help="days of payments credited to a decision")
    op.add_argument("--bootstrap", type=_positive_int, default=200, help="bootstrap resamples of the accounts")
    op.add_argument("--profile", default="us_reg_f", help="compliance profile for logs without the allowed-action mask")
    op.add_argument("--out", default=None, help="report folder (default LOGS/ope); bench: where to write bench.json and bench.md")
    op.add_argument("--scenario", default="default", help="bench: the preset")
    op.add_argument("--set", action="append", metavar="KEY=VALUE", help="bench: scenario override (repeatable)")
    op.add_argument("--logger", default="static_ladder", help="bench: the logging policy (registered id or artifact)")
    op.add_argument("--epsilon", type=float, default=0.1, help="bench: the logger's share of uniformly random allowed actions")
    op.add_argument("--learner", action="append", help="bench: an exported learner artifact to add to the targets (optional, repeatable)")
    op.add_argument("--repetitions", type=_positive_int, default=20)
    op.add_argument("--debtors", type=_positive_int, default=2000, help="bench: debtors per repetition")
    op.add_argument(
        "--truth-debtors",
        type=_positive_int,
        default=None,
        help="bench: debtors of each target's one-decision truth run (default: ope.TRUTH_DEBTORS, or 4 x --debtors if more)",
    )
    op.add_argument("--days", type=_positive_int, default=None, help="bench: horizon days")
    op.add_argument("--seed", type=_seed, default=0)
    op.add_argument("--json", action="store_true")
    op.add_argument("--no-progress", action="store_true")
    op.set_defaults(func=cmd_ope)

    pl = sub.add_parser("policies", help="list the registered policies with their versions")
    pl.set_defaults(func=cmd_policies)

    sc = sub.add_parser("scenarios", help="list the scenario presets")
    sc.set_defaults(func=cmd_scenarios)

    pf = sub.add_parser("perf", help="benchmarks, as ratios to a reference measured in the same run")
    pf.add_argument("what", choices=("sim", "env", "train", "serve", "experiment", "calibrate", "ope"))
    pf.add_argument("--artifact", default=None, help="perf serve: the artifact directory")
    pf.add_argument("--timesteps", type=_positive_int, default=400_000, help="perf train: env-steps measured on each of the two, over all rounds")
    pf.add_argument("--n-envs", type=_positive_int, default=256, help="perf train: parallel environments (debtor slots / CartPole copies)")
    pf.add_argument(
        "--rounds", type=_positive_int, default=None, help="perf train / env: alternating rounds; the median ratio is reported (default 8 / 9)"
    )
    pf.add_argument("--scenario", default="default")
    pf.add_argument(
        "--debtors", type=_positive_int, default=None, help="perf sim: portfolio size (default 200000); perf calibrate: accounts (100000)"
    )
    pf.add_argument("--days", type=_positive_int, default=180, help="perf sim: horizon days")
    pf.add_argument("--slots", type=_positive_int, default=16384, help="perf env: slots of the batched env")
    pf.add_argument("--seconds", type=float, default=4.0, help="perf env: seconds of each of the four measurements (over all rounds)")
    pf.add_argument("--seed", type=_seed, default=0)
    pf.add_argument("--json", action="store_true")
    pf.set_defaults(func=cmd_perf)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as e:
        print(f"collectrl: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("collectrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

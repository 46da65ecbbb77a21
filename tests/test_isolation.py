"""The production path (policies/) never imports the training or simulation stack."""

import subprocess
import sys

HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "simpy", "gymnasium", "pydantic")


def test_policies_imports_no_training_or_simulation_stack():
    code = (
        "import sys, policies, policies.features, policies.compliance, policies.actions, policies.fileio, policies.hashing,"
        " policies.runtime, policies.records, policies.decision;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    out = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_policies_never_unpickles():
    import pathlib
    import re

    import policies

    root = pathlib.Path(policies.__file__).parent
    unpickling = re.compile(r"^\s*import pickle|pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load|joblib|cloudpickle", re.MULTILINE)
    for f in root.rglob("*.py"):
        assert not unpickling.search(f.read_text()), f

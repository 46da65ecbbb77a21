"""Scenario configs: presets validate, inheritance, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from sim.config import ConfigError, available_scenarios, load_scenario


def test_at_least_three_presets_validate_and_differ():
    names = available_scenarios()
    assert {"default", "telecom", "late_stage"} <= set(names)
    scs = {n: load_scenario(n) for n in names}
    assert scs["late_stage"].population.dpd_at_entry.min >= 90
    assert scs["default"].population.dpd_at_entry.max <= 30
    assert scs["telecom"].population.balance.median_eur < scs["default"].population.balance.median_eur
    for sc in scs.values():
        assert sc.calibration, f"{sc.name} claims no calibration figure"


def test_extends_inherits_exactly_what_it_does_not_change():
    import yaml

    from sim.config import SCENARIO_DIR

    own = yaml.safe_load((SCENARIO_DIR / "late_stage.yaml").read_text())
    assert own["extends"] == "default"
    base, late = load_scenario("default").model_dump(), load_scenario("late_stage").model_dump()

    def walk(b, child, own_part, path):
        for key, value in b.items():
            if key not in own_part:
                assert child[key] == value, f"{path}{key} should be inherited"
            elif isinstance(value, dict) and isinstance(own_part[key], dict):
                walk(value, child[key], own_part[key], f"{path}{key}.")
            else:
                assert child[key] == own_part[key] or key == "calibration", f"{path}{key} should be overridden"

    walk(base, late, own, "")


def test_override_by_dotted_path():
    sc = load_scenario("default", ["channels.sms.cost_eur=0.10", "call_centre.agents=3", "compliance_profile=none"])
    assert sc.channels.sms.cost_eur == 0.10 and sc.call_centre.agents == 3 and sc.compliance_profile == "none"


@pytest.mark.parametrize(
    ("override", "must_say"),
    [
        ("channels.sms.cost_eur=-1", ["channels.sms.cost_eur", "-1", "greater than or equal to 0"]),
        ("channels.smss.cost_eur=1", ["unknown key 'smss'", "allowed keys", "sms"]),
        ("compliance_profile=gdpr", ["compliance_profile", "'gdpr'", "us_reg_f"]),
        ("horizon_days=abc", ["horizon_days", "'abc'", "integer"]),
        ("population.archetypes.forgetful.share=0.9", ["archetype shares must sum to 1"]),
        ("behaviour.promise_days={min: 9, max: 3}", ["behaviour.promise_days", "max (3) must be >= min (9)"]),
        ("channels.sms.cost_eur", ["key.path=value"]),
        ("channels.sms.cost_eur.x=1", ["is a value, not a section"]),
    ],
)
def test_bad_overrides_name_the_key_the_value_and_what_is_allowed(override, must_say):
    with pytest.raises(ConfigError) as e:
        load_scenario("default", [override])
    for text in must_say:
        assert text in str(e.value), (text, str(e.value))


def test_bad_files(tmp_path):
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(str(bad_yaml))
    typo = tmp_path / "typo.yaml"
    typo.write_text("extends: default\nhorizon_dayz: 30\n")
    with pytest.raises(ConfigError, match=r"horizon_dayz.*unknown key"):
        load_scenario(str(typo))
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_scenario(str(loop))
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="presets: default"):
        load_scenario("no_such_preset")


def test_scenarios_are_frozen():
    sc = load_scenario("default")
    with pytest.raises(Exception, match="frozen"):
        sc.horizon_days = 3  # type: ignore[misc]
    assert 0 < sc.daily_discount < 1


def test_null_in_a_child_scenario_removes_the_inherited_key(tmp_path):
    child = tmp_path / "utility.yaml"
    child.write_text("extends: default\nname: utility\npopulation:\n  products: {credit_card: null, personal_loan: null, bnpl: null, utility: 1.0}\n")
    assert load_scenario(str(child)).population.products == {"utility": 1.0}
    broken = tmp_path / "broken.yaml"
    broken.write_text("extends: default\nname: broken\nhorizon_days: null\n")
    with pytest.raises(ConfigError, match="horizon_days"):
        load_scenario(str(broken))


def test_the_readme_lists_every_behaviour_key_and_every_one_is_described():
    from pathlib import Path

    from sim.config import Behaviour

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Behaviour keys") : readme.index("### Calibration")]
    missing = [k for k in Behaviour.model_fields if f"`{k}" not in section]
    assert not missing, f"behaviour keys missing from the README's table: {missing}"
    undescribed = [k for k, f in Behaviour.model_fields.items() if not f.description]
    assert not undescribed, undescribed
    # default.yaml sets every key, each with a comment or under a commented block
    sc = load_scenario("default")
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / "scenarios" / "default.yaml").read_text())
    assert set(raw["behaviour"]) == set(Behaviour.model_fields), set(Behaviour.model_fields) ^ set(raw["behaviour"])
    assert sc.behaviour.deferral_keep_bonus == 0.5

"""Typed scenario configuration, loaded from YAML and validated with pydantic.

A scenario file may start with ``extends: default`` to inherit another preset and change only
what differs; ``key: null`` removes an inherited key (e.g. a product the child does not hold).
Any value can be overridden by dotted path (``channels.sms.cost_eur=0.10``).
Errors name the key path, the bad value and what is allowed (:class:`ConfigError`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from configs import config_dir
from policies.schema import CONTACT_CHANNEL_NAMES, OFFER_NAMES, PRODUCT_NAMES, TONE_NAMES, WINDOW_NAMES

SCENARIO_DIR = config_dir("scenarios")
ARCHETYPES: tuple[str, ...] = ("forgetful", "illiquid", "strategic", "vulnerable", "hard_to_reach")


class ConfigError(ValueError):
    """A bad scenario file or override; the message says what and where."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Prob = float  # documented via Field bounds below


class PerChannel(_Frozen):
    sms: float
    email: float
    push: float
    messenger: float
    letter: float
    call: float

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, c) for c in CONTACT_CHANNEL_NAMES)


class PerWindow(_Frozen):
    morning: float = Field(ge=0)
    afternoon: float = Field(ge=0)
    evening: float = Field(ge=0)
    late: float = Field(ge=0)

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, w) for w in WINDOW_NAMES)


class PerTone(_Frozen):
    friendly: float = 0.0
    empathetic: float = 0.0
    social_norm: float = 0.0
    firm: float = 0.0

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, t) for t in TONE_NAMES)


class PerOffer(_Frozen):
    none: float = 0.0
    plan: float = 0.0
    settlement: float = 0.0
    deferral: float = 0.0

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, o) for o in OFFER_NAMES)


class BetaDist(_Frozen):
    """Beta(a, b) on [0, 1]."""

    a: float = Field(gt=0)
    b: float = Field(gt=0)

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)


class Archetype(_Frozen):
    """A latent debtor type: distributions of the traits the strategy cannot see."""

    share: float = Field(ge=0, le=1)
    ability: BetaDist
    willingness: BetaDist
    distressed_prob: float = Field(ge=0, le=1, description="share showing financial distress")
    attention: PerChannel = Field(description="mean probability a delivered contact is noticed (opened / answered)")
    deliverability: float = Field(ge=0, le=1, description="multiplies each channel's delivery rate (wrong numbers, moved house)")
    window_habit: PerWindow = Field(description="relative attention by local time window (max = 1)")
    tone_effect: PerTone = Field(description="engagement logit shift per tone")
    offer_effect: PerOffer = Field(description="logit shift of the offered outcome (and half of it on engagement)")
    self_cure_per_day: float = Field(ge=0, le=1, description="long-run daily intensity of unprompted payment")
    ability_growth_per_30d: float = Field(default=0.0, ge=0, le=1, description="liquidity recovery of the temporarily illiquid")
    complaint_logit: float
    churn_logit: float


class Range(_Frozen):
    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Balance(_Frozen):
    """Lognormal balance at entry, clipped to [min_eur, max_eur]."""

    median_eur: float = Field(gt=0)
    sigma: float = Field(ge=0, le=3)
    min_eur: float = Field(gt=0)
    max_eur: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Balance:
        if self.max_eur < self.min_eur:
            raise ValueError(f"max_eur ({self.max_eur}) must be >= min_eur ({self.min_eur})")
        return self


class DigitalOnlyAttention(_Frozen):
    """Multipliers on a digital-only debtor's attention to the channels they avoid."""

    call: float = Field(default=0.1, ge=0, le=1, description="unknown callers are screened")
    letter: float = Field(default=0.2, ge=0, le=1, description="paper mail is binned unread")


class Population(_Frozen):
    size: int = Field(ge=1, le=50_000_000, description="reference portfolio size (call-centre agents are sized for it)")
    entry_spread_days: int = Field(ge=0, le=365, description="debtors enter uniformly over this many days")
    dpd_at_entry: Range
    balance: Balance
    products: dict[str, float]
    digital_only_share: float = Field(ge=0, le=1, description="share who ignore calls and letters")
    digital_only_attention: DigitalOnlyAttention = Field(
        default_factory=lambda: DigitalOnlyAttention(), description="how much of their usual attention digital-only debtors give calls and letters"
    )
    app_user_share: float = Field(ge=0, le=1)
    on_file: PerChannel = Field(description="share of debtors with a usable address per channel (push = app users)")
    score_noise: float = Field(ge=0, le=5, description="sd of the noise on the behaviour score logit")
    attention_concentration: float = Field(
        default=12.0, gt=0, description="Beta concentration of a debtor's attention per channel around their archetype's mean"
    )
    window_habit_sigma: float = Field(default=0.35, ge=0, le=3, description="sd of the lognormal noise on a debtor's relative attention by window")
    tone_effect_sd: float = Field(default=0.15, ge=0, le=3, description="sd of a debtor's reaction to each tone around their archetype's")
    offer_effect_sd: float = Field(default=0.15, ge=0, le=3, description="sd of a debtor's sensitivity to each offer around their archetype's")
    ability_scale: float = Field(default=1.0, ge=0, le=2, description="multiplies every debtor's ability to pay (0.8 = a recession)")
    archetypes: dict[str, Archetype]

    @model_validator(mode="after")
    def _check(self) -> Population:
        unknown = set(self.products) - set(PRODUCT_NAMES)
        if unknown:
            raise ValueError(f"unknown products {sorted(unknown)}; allowed: {list(PRODUCT_NAMES)}")
        if not self.products or not math.isclose(sum(self.products.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"product shares must sum to 1, got {sum(self.products.values()):.4f}")
        missing = set(ARCHETYPES) - set(self.archetypes)
        extra = set(self.archetypes) - set(ARCHETYPES)
        if missing or extra:
            raise ValueError(f"archetypes must be exactly {list(ARCHETYPES)} (missing {sorted(missing)}, unknown {sorted(extra)})")
        total = sum(a.share for a in self.archetypes.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"archetype shares must sum to 1, got {total:.4f}")
        return self


class ChannelSpec(_Frozen):
    cost_eur: float = Field(ge=0, description="cost per attempt")
    delivery_rate: float = Field(ge=0, le=1, description="probability an attempt reaches a valid address")
    delay_days: int = Field(default=0, ge=0, le=30, description="days in transit (letters)")
    engage_logit: float = Field(description="base engagement logit once noticed")
    fatigue_weight: float = Field(ge=0, description="fatigue added by a delivered contact")
    window_sensitivity: float = Field(ge=0, le=1, description="how much the debtor's time-of-day habit gates noticing (0 = not at all)")


class Channels(_Frozen):
    sms: ChannelSpec
    email: ChannelSpec
    push: ChannelSpec
    messenger: ChannelSpec
    letter: ChannelSpec
    call: ChannelSpec

    def spec(self, name: str) -> ChannelSpec:
        return getattr(self, name)  # type: ignore[no-any-return]


class Shift(_Frozen):
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)
    share: float = Field(ge=0, le=1, description="share of agents on this shift")

    @model_validator(mode="after")
    def _ordered(self) -> Shift:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})")
        return self


class CallCentre(_Frozen):
    agents: float = Field(ge=0, description="agents for a portfolio of population.size debtors (scaled with the portfolio)")
    shifts: list[Shift] = Field(min_length=1)
    handle_time_min: float = Field(gt=0, description="mean minutes of a right-party conversation incl. wrap-up")
    no_answer_time_min: float = Field(gt=0, description="mean minutes of an attempt with no right-party contact")
    conversation_cost_eur: float = Field(ge=0, description="extra cost of a right-party conversation")


class Outcome(_Frozen):
    """Multinomial-logit coefficients of an outcome, given the debtor engaged."""

    base: float
    ability: float
    willingness: float
    log_balance: float = Field(description="per unit of ln(outstanding / 1000 EUR)")


class Outcomes(_Frozen):
    pay_full: Outcome
    pay_part: Outcome
    promise: Outcome
    plan: Outcome
    settlement: Outcome
    deferral: Outcome


class SpontaneousPayment(_Frozen):
    """An unprompted payment pays the share ``min(1, (min_share + (1 - min_share) u) x (ability_offset
    + ability))`` of the outstanding, u uniform; from ``full_at`` on it clears the balance."""

    min_share: float = Field(default=0.1, ge=0, le=1)
    ability_offset: float = Field(default=0.5, ge=0, le=2)
    full_at: float = Field(default=0.95, gt=0, le=1, description="a share at least this large pays the balance in full")


class Behaviour(_Frozen):
    willingness_engage: float = Field(description="engagement logit per unit of willingness")
    age_engage_per_30d: float = Field(description="engagement logit change per 30 days past due")
    fatigue_decay_days: float = Field(gt=0, description="fatigue fades by a factor e per this many days")
    fatigue_engage: float = Field(description="engagement logit change per unit of fatigue")
    fatigue_complaint: float = Field(description="complaint logit per unit of fatigue")
    fatigue_opt_out: float = Field(description="opt-out logit per unit of fatigue")
    opt_out_logit: float = Field(description="opt-out logit of a noticed message to a rested debtor")
    firm_distressed_engage: float = Field(description="extra engagement logit of firm tone on the distressed")
    firm_distressed_complaint: float = Field(description="extra complaint logit of firm tone on the distressed")
    empathetic_distressed_engage: float = Field(description="extra engagement logit of empathetic tone on the distressed")
    late_window_complaint: float = Field(description="complaint logit shift for contact after 21:00")
    payday_ability_boost: float = Field(ge=0, le=1, description="ability added in the days after payday")
    payday_window_days: int = Field(default=5, ge=0, le=28, description="days after payday (payday included) when ability is boosted")
    offer_engage_share: float = Field(default=0.5, description="share of a debtor's sensitivity to an offer that also shifts their engagement logit")
    vulnerability_disclosure_prob: float = Field(ge=0, le=1, description="chance a distressed debtor who engages discloses it")
    outcomes: Outcomes = Field(description="multinomial-logit coefficients of what an engaged debtor does")
    part_payment_share: Range = Field(description="percent of the outstanding paid by a part payment")
    promise_days: Range = Field(description="days until a promise to pay falls due (uniform)")
    promise_keep_logit: float = Field(description="keep logit of a promise for a debtor of ability and willingness 0.5")
    keep_ability: float = Field(default=3.0, description="keep logit of promises and instalments per unit of ability above 0.5")
    keep_willingness: float = Field(default=2.0, description="keep logit of promises and instalments per unit of willingness above 0.5")
    deferral_keep_bonus: float = Field(default=0.5, description="extra keep logit of a deferral's promise (a date the debtor chose)")
    plan_instalments: int = Field(ge=2, le=24, description="instalments of a plan")
    plan_interval_days: int = Field(ge=7, le=31, description="days between instalments")
    instalment_pay_logit: float = Field(description="keep logit of an instalment for a debtor of ability and willingness 0.5")
    settlement_discount: float = Field(ge=0, lt=1, description="share of the outstanding forgiven")
    settlement_pay_days: int = Field(ge=0, le=30, description="days to pay an agreed settlement")
    deferral_days: int = Field(ge=1, le=90, description="days a deferral postpones the payment")
    intensity_decay_per_day: float = Field(gt=0, description="Chehrazi-Weber decay rate kappa, per day")
    intensity_jump_contact: float = Field(
        ge=0, description="intensity jump per engaged contact (per day) x (intensity_jump_contact_base + willingness)"
    )
    intensity_jump_contact_base: float = Field(default=0.5, ge=0, description="the part of a contact's intensity jump independent of willingness")
    intensity_jump_payment: float = Field(
        ge=0, description="intensity jump per payment (per day) x (intensity_jump_payment_base + share of balance paid)"
    )
    intensity_jump_payment_base: float = Field(default=1.0, ge=0, description="the part of a payment's intensity jump independent of its size")
    intensity_age_halflife_days: float = Field(gt=0, description="the baseline intensity halves over this debt age")
    churn_per_firm_contact: float = Field(description="churn logit per firm-tone contact")
    churn_per_complaint: float = Field(description="churn logit per complaint")
    churn_per_10_contacts: float = Field(description="churn logit per 10 contacts of any kind")
    spontaneous_payment: SpontaneousPayment = Field(
        default_factory=lambda: SpontaneousPayment(), description="the size of a payment nobody prompted (self-cure)"
    )


class Reward(_Frozen):
    complaint_penalty_eur: float = Field(ge=0)
    opt_out_penalty_eur: float = Field(ge=0)
    retention_value_eur: float = Field(ge=0, description="value of keeping a customer who resolves; lost on churn")


class CalibrationTarget(_Frozen):
    """A published figure the scenario claims to reproduce (see sim.calibration for the metrics)."""

    figure: str
    source: str
    metric: str
    target: float
    tolerance: float = Field(gt=0, description="'near': |value - target| <= tolerance; 'at_least': value >= target - tolerance")
    check: Literal["near", "at_least"] = "near"

    def passes(self, value: float) -> bool:
        if self.check == "at_least":
            return value >= self.target - self.tolerance
        return abs(value - self.target) <= self.tolerance


class Scenario(_Frozen):
    name: str
    description: str
    horizon_days: int = Field(ge=1, le=730)
    discount_rate_annual: float = Field(ge=0, le=1)
    compliance_profile: Literal["us_reg_f", "uk_fca", "none"]
    debt_sale_price: float = Field(ge=0, le=1, description="sale price at the horizon, per unit of face value")
    population: Population
    channels: Channels
    call_centre: CallCentre
    behaviour: Behaviour
    reward: Reward
    calibration: list[CalibrationTarget] = Field(default_factory=list)

    @property
    def daily_discount(self) -> float:
        return float((1.0 + self.discount_rate_annual) ** (-1.0 / 365.0))


# ---------------------------------------------------------------- loading


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario file must be a mapping of keys to values")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if v is None and k in out:  # `key: null` in a child removes what the parent set
            del out[k]
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"scenario file {p} does not exist")
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ConfigError(f"unknown scenario {name_or_path!r}; presets: {', '.join(available_scenarios())} (or give a path to a .yaml file)")
    return candidate


def load_raw(name_or_path: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The merged (``extends`` resolved) but unvalidated mapping of a scenario."""
    path = _resolve_path(name_or_path)
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends must name a preset or a file, got {parent!r}")
        data = _deep_merge(load_raw(parent, (*_seen, path)), data)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b.c=value"`` -> (``"a.b.c"``, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value (e.g. channels.sms.cost_eur=0.10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set ``key`` (dotted) in a copy of ``data``; the path must already exist."""
    out = copy.deepcopy(data)
    node: Any = out
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is a value, not a section")
        if part not in node:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"override {key}: unknown key {part!r} under {where}; allowed keys: {', '.join(sorted(map(str, node)))}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]
    return out


def _format_validation_error(source: str, data: dict[str, Any], err: ValidationError) -> str:
    lines = [f"invalid scenario {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        value: Any = data
        for p in e["loc"]:
            value = (
                value.get(p, "<missing>")
                if isinstance(value, dict)
                else (value[p] if isinstance(value, list) and isinstance(p, int) and p < len(value) else "<missing>")
            )
        shown = "<missing>" if e["type"] == "missing" else repr(value)
        msg = e["msg"].replace("Value error, ", "")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the preset files)"
        lines.append(f"  {path or '(top)'} = {shown}: {msg}")
    return "\n".join(lines)


def load_scenario(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load, merge, override and validate a scenario. Raises :class:`ConfigError`."""
    data = load_raw(name_or_path)
    for text in overrides:
        key, value = parse_override(text)
        data = apply_override(data, key, value)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(name_or_path, data, e)) from None

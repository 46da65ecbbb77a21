"""Sampling debtors: latent traits (hidden from the strategy) and the observable account.

Pure numpy; every draw comes from a seeded ``Generator`` (see :mod:`sim.rng`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from policies.schema import MONTH_DAYS, N_CONTACT_CHANNELS, PRODUCT_NAMES, Channel, Window
from sim.config import ARCHETYPES, Scenario
from sim.rng import BLOCK, Stream, block_rng

_SMS, _EMAIL, _PUSH, _MSG, _LETTER, _CALL = (
    c - 1 for c in (Channel.SMS, Channel.EMAIL, Channel.PUSH, Channel.MESSENGER, Channel.LETTER, Channel.CALL)
)


@dataclass
class Debtors:
    """A batch of sampled debtors (struct of arrays). The latent traits are float64, the precision
    the rulebook computes in, so that one debtor's numbers and a batch's are the same."""

    # latent
    archetype: np.ndarray  # int8
    ability: np.ndarray  # float64 0..1
    willingness: np.ndarray  # float64 0..1
    distressed: np.ndarray  # bool
    deliverability: np.ndarray  # float64 (N, 6)
    attention: np.ndarray  # float64 (N, 6)
    window_fit: np.ndarray  # float64 (N, 4), max 1
    tone_effect: np.ndarray  # float64 (N, 4)
    offer_effect: np.ndarray  # float64 (N, 4)
    self_cure: np.ndarray  # float64, per day
    ability_growth: np.ndarray  # float64, per 30 days
    complaint_logit: np.ndarray  # float64
    churn_logit: np.ndarray  # float64
    payday: np.ndarray  # int8, day of month 1..28
    # observable
    balance_eur: np.ndarray  # float64
    dpd_at_entry: np.ndarray  # int16
    product: np.ndarray  # int8
    behaviour_score: np.ndarray  # float32
    app_user: np.ndarray  # bool
    on_file: np.ndarray  # bool (N, 6)
    entry_offset: np.ndarray  # int16, day of entry within the cohort spread

    def __len__(self) -> int:
        return int(self.archetype.shape[0])

    def take(self, idx: np.ndarray | slice) -> Debtors:
        return Debtors(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Debtors]) -> Debtors:
        return Debtors(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Debtors)})


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def sample_block(sc: Scenario, seed: int, block: int) -> Debtors:
    """The ``BLOCK`` debtors with ids ``block*BLOCK ..``: the same for a given seed at any portfolio size."""
    rng = block_rng(seed, Stream.POPULATION, block)
    pop = sc.population
    n = BLOCK
    arche = [pop.archetypes[a] for a in ARCHETYPES]
    shares = np.array([a.share for a in arche])
    archetype = rng.choice(len(ARCHETYPES), size=n, p=shares / shares.sum()).astype(np.int8)

    def per_arch(get) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array([get(a) for a in arche], dtype=np.float64)[archetype]

    ability = rng.beta(per_arch(lambda a: a.ability.a), per_arch(lambda a: a.ability.b))
    ability = np.clip(ability * pop.ability_scale, 0.0, 1.0)
    willingness = rng.beta(per_arch(lambda a: a.willingness.a), per_arch(lambda a: a.willingness.b))
    distressed = rng.random(n) < per_arch(lambda a: a.distressed_prob)

    att_mean = np.array([a.attention.as_tuple() for a in arche])[archetype]
    att_mean = np.clip(att_mean, 1e-3, 1 - 1e-3)
    attention = rng.beta(att_mean * pop.attention_concentration, (1 - att_mean) * pop.attention_concentration)
    digital_only = rng.random(n) < pop.digital_only_share
    # Digital-only debtors screen unknown callers and bin paper mail.
    attention[digital_only, _CALL] *= pop.digital_only_attention.call
    attention[digital_only, _LETTER] *= pop.digital_only_attention.letter
    deliv = (
        per_arch(lambda a: a.deliverability)[:, None]
        * np.array([sc.channels.spec(c).delivery_rate for c in ("sms", "email", "push", "messenger", "letter", "call")])[None, :]
    )

    habit = np.array([a.window_habit.as_tuple() for a in arche])[archetype]
    habit = habit * rng.lognormal(0.0, pop.window_habit_sigma, size=(n, len(Window)))
    window_fit = habit / habit.max(axis=1, keepdims=True)

    tone = np.array([a.tone_effect.as_tuple() for a in arche])[archetype] + rng.normal(0, pop.tone_effect_sd, size=(n, 4))
    offer = np.array([a.offer_effect.as_tuple() for a in arche])[archetype] + rng.normal(0, pop.offer_effect_sd, size=(n, 4))

    b = pop.balance
    balance = np.clip(b.median_eur * rng.lognormal(0.0, b.sigma, size=n), b.min_eur, b.max_eur).round(2)
    dpd = rng.integers(pop.dpd_at_entry.min, pop.dpd_at_entry.max + 1, size=n)
    prod_names = list(pop.products)
    prod_p = np.array([pop.products[p] for p in prod_names])
    product = np.array([PRODUCT_NAMES.index(p) for p in prod_names])[rng.choice(len(prod_names), size=n, p=prod_p / prod_p.sum())]
    score = 1.0 / (1.0 + np.exp(-(_logit(0.5 * ability + 0.5 * willingness) + rng.normal(0, pop.score_noise, size=n))))
    app_user = rng.random(n) < pop.app_user_share
    on_file = rng.random((n, N_CONTACT_CHANNELS)) < np.array(pop.on_file.as_tuple())[None, :]
    on_file[:, _CALL] = on_file[:, _SMS]  # one phone number serves texts and calls
    on_file[:, _PUSH] &= app_user
    on_file[:, _MSG] &= on_file[:, _SMS]
    entry = rng.integers(0, pop.entry_spread_days + 1, size=n) if pop.entry_spread_days > 0 else np.zeros(n, dtype=np.int64)

    return Debtors(
        archetype=archetype,
        ability=ability,
        willingness=willingness,
        distressed=distressed,
        deliverability=deliv,
        attention=attention,
        window_fit=window_fit,
        tone_effect=tone,
        offer_effect=offer,
        self_cure=per_arch(lambda a: a.self_cure_per_day),
        ability_growth=per_arch(lambda a: a.ability_growth_per_30d),
        complaint_logit=per_arch(lambda a: a.complaint_logit),
        churn_logit=per_arch(lambda a: a.churn_logit),
        payday=rng.integers(1, MONTH_DAYS + 1, size=n).astype(np.int8),
        balance_eur=balance,
        dpd_at_entry=dpd.astype(np.int16),
        product=product.astype(np.int8),
        behaviour_score=score.astype(np.float32),
        app_user=app_user,
        on_file=on_file,
        entry_offset=entry.astype(np.int16),
    )


class BlockCache:
    """Keeps the most recently sampled blocks, so refilling one slot at a time stays cheap."""

    def __init__(self, sc: Scenario, seed: int, keep: int = 2) -> None:
        self.sc, self.seed, self.keep = sc, seed, keep
        self._blocks: dict[int, Debtors] = {}

    def get(self, block: int) -> Debtors:
        d = self._blocks.get(block)
        if d is None:
            d = sample_block(self.sc, self.seed, block)
            self._blocks[block] = d
            while len(self._blocks) > self.keep:
                del self._blocks[min(self._blocks)]
        return d


def sample(sc: Scenario, seed: int, start: int, count: int, cache: BlockCache | None = None) -> Debtors:
    """Debtors with ids ``start .. start+count-1``."""
    get = cache.get if cache is not None else (lambda b: sample_block(sc, seed, b))
    if count <= 0:
        return get(start // BLOCK).take(slice(0, 0))
    first, last = start // BLOCK, (start + count - 1) // BLOCK
    parts = [get(b) for b in range(first, last + 1)]
    allb = parts[0] if len(parts) == 1 else Debtors.concat(parts)
    off = start - first * BLOCK
    return allb.take(slice(off, off + count))

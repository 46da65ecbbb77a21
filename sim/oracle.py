"""The oracle: a policy that sees the latent traits and uses the behaviour model's own probabilities.

How it is built
---------------
Each day, for every open debtor without an open promise or plan and not contacted in the last
``gap_days`` days, it scores every allowed (channel, tone, offer), each channel in its best
allowed window for this debtor's habits, by the expected *incremental* net value of the contact:

    EV = P(delivered and noticed) x [ P(no complaint, no opt-out) x P(engage) x G(offer)
                                      - P(complaint) x complaint penalty - P(opt-out) x opt-out penalty ]
         - contact cost - P(conversation) x conversation cost - churn cost of a firm tone

where G(offer) sums, over the outcomes the offer makes possible, their probability times the money
they bring *beyond what the debtor would pay unprompted by the horizon* (the self-cure
probability ``s`` comes from the debtor's own repayment intensity): a payment in full is worth
``outstanding x (1 - s)``, a promise the same times the probability it is kept, a plan the expected
share of instalments paid, a settlement ``P(kept) x ((1 - discount) - s) x outstanding`` (so it is
never offered to someone who would pay in full anyway). It contacts with the best action when its
EV is positive, else waits. Every probability is a function of ``sim.behaviour``, evaluated on
the debtor's true ability, willingness, distress, attention, habits, sensitivities and fatigue.

It is greedy (one contact ahead), so it bounds from below what a strategy could learn with
perfect information; the evaluation suite checks that it beats every other policy on every preset.
"""

from __future__ import annotations

import numpy as np

from policies.base import register
from policies.schema import N_CONTACT_CHANNELS, ViewBatch, Window
from sim import behaviour as bm
from sim.world import World

_LETTER, _CALL = 4, 5
_TIMED_WINDOWS = (int(Window.MORNING), int(Window.AFTERNOON), int(Window.EVENING))


class Oracle:
    """Greedy expected-value policy with privileged access to latent traits (see module docstring)."""

    policy_id = "oracle"
    version = 1
    needs_world = True

    def __init__(self, gap_days: int = 3) -> None:
        self.gap_days = gap_days

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        raise TypeError("the oracle sees latent traits: run it through the simulator (sim.runner), which calls act_with_world()")

    def act_with_world(self, world: World, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = world.n
        out = np.zeros((n, 4), dtype=np.int64)
        eligible = world.open & ~views.promise_active & ~views.plan_active & (views.days_since_contact >= self.gap_days)
        idx = np.flatnonzero(eligible)
        if len(idx) == 0:
            return out
        sc, prm, t = world.sc, world.prm, world.traits
        assert t is not None
        b, m = sc.behaviour, mask[idx]
        outstanding = world.outstanding[idx]
        days_in = world.days_in[idx]
        dpd = t.dpd_at_entry[idx] + days_in
        ab = bm.effective_ability(sc, t.ability[idx], t.ability_growth[idx], days_in, t.payday[idx], world.day)
        will = t.willingness[idx].astype(np.float64)
        distressed = t.distressed[idx]
        fatigue = world.fatigue[idx].astype(np.float64)
        remaining = np.maximum(world.horizon - days_in, 0)

        # P(unprompted repayment by the horizon): integral of the decaying baseline plus the excess intensity
        h = b.intensity_age_halflife_days
        base0 = bm.baseline_intensity(sc, t.self_cure[idx], dpd)
        mass = base0 * h / np.log(2) * (1 - np.exp2(-remaining / h)) + np.maximum(world.intensity[idx] - base0, 0) / b.intensity_decay_per_day
        s = 1 - np.exp(-mass)

        # best allowed timed window per debtor and channel
        fit = t.window_fit[idx][:, list(_TIMED_WINDOWS)]
        fit = np.where(m[:, [7 + w for w in _TIMED_WINDOWS]], fit, -1.0)
        best_w = np.array(_TIMED_WINDOWS)[fit.argmax(axis=1)]
        wfit = fit.max(axis=1)
        p_reach = t.deliverability[idx] * bm.p_notice(t.attention[idx], wfit[:, None], prm.window_sensitivity[None, :])  # (M, 6)

        # outcome gains per offer (M, 4)
        keep_p = bm.sigmoid(bm.keep_logit(b.promise_keep_logit, ab, will))
        keep_d = bm.sigmoid(bm.keep_logit(b.promise_keep_logit, ab, will) + 0.5)
        inst = bm.sigmoid(bm.keep_logit(b.instalment_pay_logit, ab, will))
        k = b.plan_instalments
        plan_share = sum(inst**j for j in range(1, k + 1)) / k
        part = 0.5 * (b.part_payment_share.min + b.part_payment_share.max) / 100.0
        free = outstanding * (1 - s)
        gain = np.stack(
            [
                free,
                free * part,
                free * keep_p,
                free * plan_share,
                keep_p * ((1 - b.settlement_discount) - s) * outstanding,
                free * keep_d * sc.daily_discount**b.deferral_days,
                np.zeros_like(free),
            ],
            axis=1,
        )
        g = np.stack(
            [(bm.outcome_probabilities(prm, ab, will, outstanding, np.full(len(idx), o), t.offer_effect[idx]) * gain).sum(axis=1) for o in range(4)],
            axis=1,
        )

        ev = np.full((len(idx), N_CONTACT_CHANNELS, 4, 4), -np.inf)
        p_opt = bm.sigmoid(bm.opt_out_logit(sc, fatigue))
        firm_churn = sc.reward.retention_value_eur * b.churn_per_firm_contact * 0.25
        for tone in range(4):
            firm = np.full(len(idx), tone == 3)
            p_c = bm.sigmoid(bm.complaint_logit(sc, t.complaint_logit[idx], fatigue, firm, distressed, np.zeros(len(idx), dtype=bool)))
            for c in range(N_CONTACT_CHANNELS):
                po = np.zeros(len(idx)) if c == _LETTER else p_opt
                for o in range(4):
                    z = bm.engage_logit(
                        sc,
                        prm,
                        np.full(len(idx), c),
                        np.full(len(idx), tone),
                        will,
                        t.tone_effect[idx, tone],
                        t.offer_effect[idx, o],
                        distressed,
                        fatigue,
                        dpd,
                    )
                    value = (1 - p_c - po) * bm.sigmoid(z) * g[:, o] - p_c * sc.reward.complaint_penalty_eur - po * sc.reward.opt_out_penalty_eur
                    cost = (
                        prm.cost_eur[c]
                        + (sc.call_centre.conversation_cost_eur * p_reach[:, c] if c == _CALL else 0.0)
                        + (firm_churn if tone == 3 else 0.0)
                    )
                    ev[:, c, tone, o] = p_reach[:, c] * value - cost
        allowed = m[:, 1:7, None, None] & m[:, None, None, 11:15].transpose(0, 1, 3, 2) & m[:, None, None, 15:19]
        ev[~allowed] = -np.inf
        flat = ev.reshape(len(idx), -1)
        best = flat.argmax(axis=1)
        go = flat[np.arange(len(idx)), best] > 0
        c, rest = np.divmod(best, 16)
        tone, offer = np.divmod(rest, 4)
        sel = idx[go]
        out[sel, 0] = c[go] + 1
        out[sel, 1] = np.where(c[go] == _LETTER, int(Window.MORNING), best_w[go])
        out[sel, 2] = tone[go]
        out[sel, 3] = offer[go]
        return out


register("oracle", Oracle)

"""The oracle: a policy that sees the latent traits and uses the behaviour model's own probabilities.

How it is built
---------------
Each day, for every open debtor without an open promise or plan and not contacted in the last
``gap_days`` days, it scores every allowed (channel, tone, offer), each channel in its best
allowed window for this debtor's habits, by the expected *incremental* net value of the contact:

    EV = P(delivered and noticed) x [ P(no complaint, no opt-out) x P(engage) x G(offer)
                                      - P(complaint) x complaint penalty - P(opt-out) x opt-out penalty ]
         - contact cost - P(conversation) x conversation cost - churn cost of a firm tone

(the churn cost of a firm tone: the retention value times the rise in the churn probability one
more firm contact gives, at the debtor's present churn logit)

where G(offer) sums, over the outcomes the offer makes possible, their probability times the money
they bring *beyond what the debtor would pay unprompted by the horizon* (the self-cure
probability ``s`` comes from the debtor's own repayment intensity): a payment in full is worth
``outstanding x (1 - s)``, a promise the same times the probability it is kept, a plan the expected
share of instalments paid, a settlement ``P(kept) x ((1 - discount) - s) x outstanding`` (so it is
never offered to someone who would pay in full anyway). It contacts with the best action when its
EV is positive, else waits. Every probability is a rule of the rulebook (``sim.behaviour``), the
same function the world draws its behaviour from, evaluated on the debtor's true ability,
willingness, distress, attention, habits, sensitivities and fatigue.

It is greedy (one contact ahead), so it bounds from below what a strategy could learn with
perfect information; the evaluation suite checks that it beats every other policy on every preset.
"""

from __future__ import annotations

import numpy as np

from policies.schema import ACTION_DIMS, N_CONTACT_CHANNELS, Tone, ViewBatch, Window
from sim import behaviour as rules
from sim.world import World

_LETTER, _CALL, _FIRM = rules.LETTER, rules.CALL, int(Tone.FIRM)
_TIMED_WINDOWS = (int(Window.MORNING), int(Window.AFTERNOON), int(Window.EVENING))
# where the window, tone and offer columns start in the compliance mask (channel, window, tone, offer)
_MASK_WINDOW, _MASK_TONE, _MASK_OFFER = (sum(ACTION_DIMS[:k]) for k in (1, 2, 3))


class Oracle:
    """Greedy expected-value policy with privileged access to latent traits (see module docstring)."""

    policy_id = "oracle"
    version = 2

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
        sc, prm, t, s = world.sc, world.prm, world.traits, world.state
        b, rw, m, k = sc.behaviour, sc.reward, mask[idx], len(idx)
        outstanding = s.outstanding[idx]
        days_in = s.days_in[idx]
        dpd = t.dpd_at_entry[idx] + days_in
        ab = rules.effective_ability(b, t.ability[idx], t.ability_growth[idx], days_in, t.payday[idx], world.day)
        will = t.willingness[idx]
        distressed = t.distressed[idx]
        fatigue = s.fatigue[idx]

        # P(unprompted repayment by the horizon), from the debtor's own intensity
        baseline = rules.baseline_intensity(b, t.self_cure[idx], dpd)
        self_cure = 1 - np.exp(-rules.expected_unprompted(b, baseline, s.intensity[idx], np.maximum(world.horizon - days_in, 0)))

        # best allowed timed window per debtor and channel
        fit = t.window_fit[idx][:, list(_TIMED_WINDOWS)]
        fit = np.where(m[:, [_MASK_WINDOW + w for w in _TIMED_WINDOWS]], fit, -1.0)
        best_w = np.array(_TIMED_WINDOWS)[fit.argmax(axis=1)]
        wfit = fit.max(axis=1)
        p_reach = t.deliverability[idx] * rules.p_notice(t.attention[idx], wfit[:, None], prm.window_sensitivity[None, :])  # (k, 6)

        # what each outcome is worth beyond self-cure (k, 7), and each offer's expected gain (k, 4)
        keep_promise = rules.sigmoid(rules.promise_keep_logit(b, ab, will, rules.PROMISE_KIND))
        keep_deferral = rules.sigmoid(rules.promise_keep_logit(b, ab, will, rules.DEFERRAL_KIND))
        instalment = rules.sigmoid(rules.instalment_keep_logit(b, ab, will))
        plan_share = sum(instalment**j for j in range(1, b.plan_instalments + 1)) / b.plan_instalments
        free = outstanding * (1 - self_cure)
        gain = [
            free,
            free * rules.part_payment_share(b, 0.5),  # the mean share of a part payment
            free * keep_promise,
            free * plan_share,
            keep_promise * (rules.settlement_amount(b, outstanding) - self_cure * outstanding),
            free * keep_deferral * sc.daily_discount**b.deferral_days,
            np.zeros(k),
        ]
        p_outcome = [rules.outcome_probabilities(prm.outcome_coef, ab, will, outstanding, o, t.offer_effect[idx]) for o in range(4)]
        g = np.stack([sum(p * v for p, v in zip(p_outcome[o], gain, strict=True)) for o in range(4)], axis=1)

        # a firm tone costs the retention value times the rise in churn it causes when the debt resolves
        churn_z = rules.churn_logit(b, t.churn_logit[idx], s.firm_contacts[idx], s.complaints[idx], s.contacts_total[idx])
        firm_churn = rw.retention_value_eur * (rules.sigmoid(churn_z + b.churn_per_firm_contact) - rules.sigmoid(churn_z))
        p_opt = rules.sigmoid(rules.opt_out_logit(b, fatigue))
        no_opt = np.zeros(k)
        tone_effect, offer_effect = t.tone_effect[idx], t.offer_effect[idx]
        ev = np.full((k, N_CONTACT_CHANNELS, 4, 4), -np.inf)
        for tone in range(4):
            p_c = rules.sigmoid(rules.complaint_logit(b, t.complaint_logit[idx], fatigue, tone == _FIRM, distressed, False))
            for c in range(N_CONTACT_CHANNELS):
                po = no_opt if c == _LETTER else p_opt
                for o in range(4):
                    z = rules.engage_logit(b, prm.engage_logit[c], will, tone_effect[:, tone], offer_effect[:, o], tone, distressed, fatigue, dpd)
                    value = (1 - p_c - po) * rules.sigmoid(z) * g[:, o] - p_c * rw.complaint_penalty_eur - po * rw.opt_out_penalty_eur
                    conversation = sc.call_centre.conversation_cost_eur * p_reach[:, c] if c == _CALL else 0.0
                    cost = prm.cost_eur[c] + conversation + (firm_churn if tone == _FIRM else 0.0)
                    ev[:, c, tone, o] = p_reach[:, c] * value - cost
        tone_ok = m[:, _MASK_TONE:_MASK_OFFER]
        offer_ok = m[:, _MASK_OFFER:]
        allowed = m[:, 1:_MASK_WINDOW, None, None] & tone_ok[:, None, :, None] & offer_ok[:, None, None, :]
        ev[~allowed] = -np.inf
        flat = ev.reshape(k, -1)
        best = flat.argmax(axis=1)
        go = flat[np.arange(k), best] > 0
        c, rest = np.divmod(best, 16)
        tone, offer = np.divmod(rest, 4)
        sel = idx[go]
        out[sel, 0] = c[go] + 1
        out[sel, 1] = np.where(c[go] == _LETTER, int(Window.MORNING), best_w[go])
        out[sel, 2] = tone[go]
        out[sel, 3] = offer[go]
        return out

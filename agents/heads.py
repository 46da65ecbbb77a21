"""Actor-critic policies whose MultiDiscrete action heads are evaluated as one tensor.

stable-baselines3 builds a MultiDiscrete distribution as one ``torch.distributions.Categorical`` per
head (channel, window, tone, offer), so every rollout step and every minibatch pays four objects'
construction, argument checks and kernel launches, four times over. Here the four heads' logits are
laid into one padded ``(batch, heads, widest)`` tensor: one ``log_softmax``, one ``gather``, one
``multinomial``. The distribution is the same (each head an independent softmax over its own
choices; padding has probability exactly zero), so the learners optimise the same objective; only the
random draws differ from stock SB3, because the samples come from one ``multinomial`` call.

The network itself (``mlp_extractor``, ``action_net`` producing the flat logits, ``value_net``) is
unchanged, so ONNX export and ``agents.learned`` read these policies as they read stock ones. Other
action spaces (CartPole's ``Discrete(2)``, DQN's flat codec) keep SB3's own distributions.

SB3 and sb3-contrib are extended here, never edited: the policies only swap the distribution object
before the networks are built.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch as th
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy

# sb3-contrib's MaskableCategorical gives masked-out choices this logit; the padding of narrower heads
# sits below it, so a head whose every choice is masked is still uniform over its own choices, as there.
# (There its log-probability rounds to 0 in float32, here it is -log(choices); either is a constant
# without gradient, so PPO's ratio and loss are unchanged. Our compliance masks always leave a choice.)
MASKED_LOGIT = -1e8
PADDING_LOGIT = -2e8

D = TypeVar("D", bound="_PaddedHeads")


class _PaddedHeads:
    """The shared arithmetic: flat logits ``(B, sum(dims))`` -> padded ``(B, heads, widest)``."""

    action_dims: list[int]

    def _setup(self, action_dims: list[int]) -> None:
        dims = [int(d) for d in action_dims]
        widest = max(dims)
        flat = sum(dims)
        # index into the flat logits extended by one padding column (index ``flat``)
        index = np.full((len(dims), widest), flat, dtype=np.int64)
        start = 0
        for h, d in enumerate(dims):
            index[h, :d] = np.arange(start, start + d)
            start += d
        self._index = th.as_tensor(index.reshape(-1))
        self._shape = (len(dims), widest)
        self._flat: th.Tensor | None = None  # the network's flat logits
        self._logits: th.Tensor | None = None  # padded logits, after masking if masks were applied
        self._masks: th.Tensor | None = None  # padded masks (True = allowed), or None
        self._logp: th.Tensor | None = None  # log-probabilities, computed on first use

    def _pad(self, flat_logits: th.Tensor) -> th.Tensor:
        extended = th.cat([flat_logits, flat_logits.new_full((flat_logits.shape[0], 1), PADDING_LOGIT)], dim=1)
        return extended.index_select(1, self._index.to(flat_logits.device)).view(-1, *self._shape)

    def _set_logits(self: D, flat_logits: th.Tensor) -> D:
        self._flat = flat_logits.reshape(-1, sum(self.action_dims))
        self._logits = self._pad(self._flat)
        self._masks = None
        self._logp = None
        return self

    @property
    def logp(self) -> th.Tensor:
        """Per-head log-probabilities, ``(B, heads, widest)``; padding is about -2e8 (probability 0)."""
        if self._logp is None:
            assert self._logits is not None, "set the distribution's logits first"
            self._logp = th.log_softmax(self._logits, dim=-1)
        return self._logp

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        chosen = actions.reshape(-1, len(self.action_dims)).long().unsqueeze(-1)
        return self.logp.gather(-1, chosen).squeeze(-1).sum(dim=1)

    def entropy(self) -> th.Tensor:
        logp = self.logp
        # padded and masked-out choices have probability exactly 0 (exp of about -1e8), so they add 0
        # here, as in sb3-contrib's masked entropy
        p_log_p = logp.exp() * logp
        if self._masks is not None:
            p_log_p = th.where(self._masks, p_log_p, th.zeros((), dtype=p_log_p.dtype, device=p_log_p.device))
        return -p_log_p.sum(dim=(1, 2))

    def sample(self) -> th.Tensor:
        probs = self.logp.exp().reshape(-1, self._shape[1])
        return th.multinomial(probs, 1).view(-1, self._shape[0])

    def mode(self) -> th.Tensor:
        assert self._logits is not None, "set the distribution's logits first"
        return th.argmax(self._logits, dim=-1)


class PaddedMultiCategoricalDistribution(_PaddedHeads, MultiCategoricalDistribution):
    """SB3's ``MultiCategoricalDistribution``, computed on padded heads."""

    def __init__(self, action_dims: list[int]) -> None:
        MultiCategoricalDistribution.__init__(self, action_dims)
        self._setup(action_dims)

    def proba_distribution(self, action_logits: th.Tensor) -> PaddedMultiCategoricalDistribution:  # type: ignore[override]
        return self._set_logits(action_logits)


class PaddedMaskableMultiCategoricalDistribution(_PaddedHeads, MaskableMultiCategoricalDistribution):
    """sb3-contrib's ``MaskableMultiCategoricalDistribution``, computed on padded heads."""

    def __init__(self, action_dims: list[int]) -> None:
        MaskableMultiCategoricalDistribution.__init__(self, action_dims)
        self._setup(action_dims)

    def proba_distribution(self, action_logits: th.Tensor) -> PaddedMaskableMultiCategoricalDistribution:  # type: ignore[override]
        return self._set_logits(action_logits)

    def apply_masking(self, masks: Any) -> None:
        assert self._flat is not None, "set the distribution's logits first"
        self._logp = None
        if masks is None:
            self._masks = None
            self._logits = self._pad(self._flat)
            return
        allowed = th.as_tensor(masks, dtype=th.bool, device=self._flat.device).reshape(self._flat.shape)
        masked = th.where(allowed, self._flat, th.full((), MASKED_LOGIT, dtype=self._flat.dtype, device=self._flat.device))
        self._logits = self._pad(masked)
        extended = th.cat([allowed, allowed.new_zeros((allowed.shape[0], 1))], dim=1)
        self._masks = extended.index_select(1, self._index.to(allowed.device)).view(-1, *self._shape)


class HeadsActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (``"MlpPolicy"``) with padded MultiDiscrete heads."""

    def _build(self, lr_schedule: Any) -> None:
        if type(self.action_dist) is MultiCategoricalDistribution:
            self.action_dist = PaddedMultiCategoricalDistribution(self.action_dist.action_dims)
        super()._build(lr_schedule)


class HeadsMaskableActorCriticPolicy(MaskableActorCriticPolicy):
    """sb3-contrib's ``MaskableActorCriticPolicy`` with padded MultiDiscrete heads."""

    def _build(self, lr_schedule: Any) -> None:
        if type(self.action_dist) is MaskableMultiCategoricalDistribution:
            self.action_dist = PaddedMaskableMultiCategoricalDistribution(self.action_dist.action_dims)
        super()._build(lr_schedule)

"""Actor-critic policies whose MultiDiscrete action heads are evaluated as one tensor.

stable-baselines3 builds a MultiDiscrete distribution as one ``torch.distributions.Categorical`` per
head (channel, window, tone, offer), so every rollout step and every minibatch pays for four
objects' construction, argument checks and small kernel launches per operation. Here the heads' logits are
laid into one padded ``(heads, widest, batch)`` tensor: one ``log_softmax``, one ``gather``, one
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
from stable_baselines3.common.torch_layers import MlpExtractor

# sb3-contrib's MaskableCategorical gives masked-out choices this logit; the padding of narrower heads
# sits below it, so a head whose every choice is masked is still uniform over its own choices, as there.
# (There its log-probability rounds to 0 in float32, here it is -log(choices); either is a constant
# without gradient, so PPO's ratio and loss are unchanged. Our compliance masks always leave a choice.)
MASKED_LOGIT = -1e8
PADDING_LOGIT = -2e8

D = TypeVar("D", bound="_PaddedHeads")


class _PaddedHeads:
    """The shared arithmetic: flat logits ``(B, sum(dims))`` -> padded ``(heads, widest, B)``.

    The batch is the last, contiguous axis: torch reduces over a short innermost axis (7 choices)
    about ten times slower than across one (log-softmax of 2,048 x 4 x 7 on this machine: 905 us
    with the choices innermost, 85 us with the batch innermost)."""

    action_dims: list[int]

    def __init__(self, action_dims: list[int]) -> None:
        super().__init__(action_dims)  # type: ignore[call-arg]  # the SB3 distribution after this mixin
        dims = [int(d) for d in action_dims]
        widest = max(dims)
        flat = sum(dims)
        # rows of the flat logits, transposed and extended by one padding row (index ``flat``)
        index = np.full((len(dims), widest), flat, dtype=np.int64)
        start = 0
        for h, d in enumerate(dims):
            index[h, :d] = np.arange(start, start + d)
            start += d
        self._index = th.as_tensor(index.reshape(-1))
        self._shape = (len(dims), widest)
        self._flat: th.Tensor | None = None  # the network's flat logits, (B, sum(dims))
        self._logits: th.Tensor | None = None  # padded logits, after masking if masks were applied
        self._masks: th.Tensor | None = None  # padded masks (True = allowed), or None
        self._logp: th.Tensor | None = None  # log-probabilities, computed on first use
        # the first head's choice 0 ("wait") makes the other heads idle: see HeadsActorCriticPolicy
        self.conditional = False

    def _pad(self, flat: th.Tensor, fill: float | bool) -> th.Tensor:
        """``(B, sum(dims))`` -> ``(heads, widest, B)``, padding set to ``fill``."""
        extended = th.cat([flat.T, flat.new_full((1, flat.shape[0]), fill)], dim=0)
        return extended.index_select(0, self._index.to(flat.device)).view(*self._shape, flat.shape[0])

    def proba_distribution(self: D, action_logits: th.Tensor) -> D:
        self._flat = action_logits.reshape(-1, sum(self.action_dims))
        self._logits = self._pad(self._flat, PADDING_LOGIT)
        self._masks = None
        self._logp = None
        return self

    @property
    def logp(self) -> th.Tensor:
        """Per-head log-probabilities, ``(heads, widest, B)``; padding is about -2e8 (probability 0)."""
        if self._logp is None:
            assert self._logits is not None, "set the distribution's logits first"
            self._logp = th.log_softmax(self._logits, dim=1)
        return self._logp

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        chosen = actions.reshape(-1, len(self.action_dims)).long().T.unsqueeze(1)  # (heads, 1, B)
        per_head = self.logp.gather(1, chosen).squeeze(1)  # (heads, B)
        if self.conditional:  # a day spent waiting: the window, tone and offer drawn did nothing
            contact = (chosen[0, 0] != 0).to(per_head.dtype)
            return per_head[0] + contact * per_head[1:].sum(dim=0)
        return per_head.sum(dim=0)

    def entropy(self) -> th.Tensor:
        logp = self.logp
        # padded and masked-out choices have probability exactly 0 (exp of about -1e8), so they add 0;
        # the mask matters only for a head with every choice masked (uniform, yet no entropy, as in
        # sb3-contrib's masked entropy)
        p_log_p = logp.exp() * logp
        if self._masks is not None:
            p_log_p = th.where(self._masks, p_log_p, th.zeros((), dtype=p_log_p.dtype, device=p_log_p.device))
        return -p_log_p.sum(dim=(0, 1))

    def sample(self) -> th.Tensor:
        probs = self.logp.exp().permute(2, 0, 1).reshape(-1, self._shape[1])  # (B * heads, widest)
        return th.multinomial(probs, 1).view(-1, self._shape[0])

    def mode(self) -> th.Tensor:
        assert self._logits is not None, "set the distribution's logits first"
        return th.argmax(self._logits, dim=1).T


class PaddedMultiCategoricalDistribution(_PaddedHeads, MultiCategoricalDistribution):
    """SB3's ``MultiCategoricalDistribution``, computed on padded heads."""


class PaddedMaskableMultiCategoricalDistribution(_PaddedHeads, MaskableMultiCategoricalDistribution):
    """sb3-contrib's ``MaskableMultiCategoricalDistribution``, computed on padded heads."""

    def apply_masking(self, masks: Any) -> None:
        assert self._flat is not None, "set the distribution's logits first"
        self._logp = None
        if masks is None:
            self._masks = None
            self._logits = self._pad(self._flat, PADDING_LOGIT)
            return
        allowed = th.as_tensor(masks, dtype=th.bool, device=self._flat.device).reshape(self._flat.shape)
        masked = th.where(allowed, self._flat, th.full((), MASKED_LOGIT, dtype=self._flat.dtype, device=self._flat.device))
        self._logits = self._pad(masked, PADDING_LOGIT)
        self._masks = self._pad(allowed, False)


class CriticOnlyExtractor(th.nn.Module):
    """SB3's ``MlpExtractor`` (separate actor and critic networks of ``net_arch``) whose actor reads only
    the first ``features - hidden`` columns: the last ``hidden`` columns (the debtor's latent traits,
    ``sim.envs.LatentView``) reach the critic alone. The value function then knows what this debtor
    was worth anyway, so an action's advantage is less confounded with who the debtor is (an
    asymmetric actor-critic); the actor, and so the exported policy, stays a function of what a
    collections system observes. Given only the observable columns, as at evaluation and in the
    exported score head, ``forward_actor`` is the actor unchanged."""

    def __init__(self, features: int, hidden: int, net_arch: Any, activation_fn: type[th.nn.Module], device: Any) -> None:
        super().__init__()
        if not 0 < hidden < features:
            raise ValueError(f"critic-only columns must be fewer than the features ({hidden} of {features})")
        self.public = features - hidden
        actor = MlpExtractor(self.public, net_arch, activation_fn, device)
        critic = MlpExtractor(features, net_arch, activation_fn, device)
        self.policy_net = actor.policy_net
        self.value_net = critic.value_net
        self.latent_dim_pi = actor.latent_dim_pi
        self.latent_dim_vf = critic.latent_dim_vf

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(features[..., : self.public])

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(features)


class _WaitPrior:
    """Start the first head (the channel, whose choice 0 is "wait") at a chosen probability of waiting.

    SB3 initialises the action layer so every head starts uniform: with seven channels the first
    policy contacts a debtor on six days out of seven, so what it first learns about contacting is
    what daily contact does (fatigue, complaints, opt-outs). ``wait_prior=p`` sets the bias of the
    "wait" logit to ``log(p (K - 1) / (1 - p))``, so the untrained policy waits with probability ``p``
    and spreads ``1 - p`` evenly over the K - 1 channels; ``None`` keeps SB3's uniform start. Only the
    starting point moves: the parameter trains like any other, and a saved model reloads its weights.
    """

    action_net: th.nn.Module

    def __init__(
        self, *args: Any, wait_prior: float | None = None, conditional_heads: bool = False, critic_only_features: int = 0, **kwargs: Any
    ) -> None:
        if wait_prior is not None and not 0.0 < wait_prior < 1.0:
            raise ValueError(f"wait_prior must lie strictly between 0 and 1 (got {wait_prior!r})")
        self.wait_prior = wait_prior  # set before the policy's __init__, which calls _build
        self.conditional_heads = conditional_heads
        self.critic_only_features = int(critic_only_features)
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        base: Any = super()  # a mixin: the policy class it is mixed into has the method
        return {
            **base._get_constructor_parameters(),
            "wait_prior": self.wait_prior,
            "conditional_heads": self.conditional_heads,
            "critic_only_features": self.critic_only_features,
        }

    def _build_mlp_extractor(self) -> None:
        """With ``critic_only_features``, the last that many observation columns feed the critic alone
        (:class:`CriticOnlyExtractor`); otherwise SB3's own extractor."""
        if not self.critic_only_features:
            base: Any = super()
            base._build_mlp_extractor()
            return
        me: Any = self  # a mixin: the policy it is mixed into declares mlp_extractor as SB3's MlpExtractor
        me.mlp_extractor = CriticOnlyExtractor(me.features_dim, self.critic_only_features, me.net_arch, me.activation_fn, me.device)

    def _set_conditional(self) -> None:
        """Called at the end of ``_build``: with ``conditional_heads``, an action's probability is the
        channel's alone when the channel is "wait" (choice 0), and the channel's times the window's,
        tone's and offer's otherwise, as the world (and the exported policy's propensity) treats it.
        Without it, a waiting day's log-probability also counts the window, tone and offer drawn for
        nothing, and PPO pushes those heads by the advantage of waiting: noise, on most days. The
        entropy bonus still counts every head, so the idle heads are kept from collapsing."""
        if not self.conditional_heads:
            return
        dist = getattr(self, "action_dist", None)
        if not isinstance(dist, _PaddedHeads):
            raise ValueError("conditional_heads needs a MultiDiscrete action space whose first head is the channel (remove conditional_heads)")
        dist.conditional = True

    def _set_wait_bias(self) -> None:
        """Called at the end of ``_build``, once ``action_net`` exists."""
        if self.wait_prior is None:
            return
        dims = getattr(getattr(self, "action_dist", None), "action_dims", None)
        if dims is None:
            raise ValueError("wait_prior needs a MultiDiscrete action space whose first head is the channel (remove wait_prior)")
        choices, p = int(dims[0]), self.wait_prior
        with th.no_grad():
            bias: th.Tensor = self.action_net.bias  # type: ignore[assignment]  # a Linear layer
            bias[0] = float(np.log(p * (choices - 1) / (1.0 - p)))


class HeadsActorCriticPolicy(_WaitPrior, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (``"MlpPolicy"``) with padded MultiDiscrete heads and an optional ``wait_prior``."""

    def _build(self, lr_schedule: Any) -> None:
        if type(self.action_dist) is MultiCategoricalDistribution:
            self.action_dist = PaddedMultiCategoricalDistribution(self.action_dist.action_dims)
        super()._build(lr_schedule)
        self._set_wait_bias()
        self._set_conditional()


class HeadsMaskableActorCriticPolicy(_WaitPrior, MaskableActorCriticPolicy):
    """sb3-contrib's ``MaskableActorCriticPolicy`` with padded MultiDiscrete heads and an optional ``wait_prior``."""

    def _build(self, lr_schedule: Any) -> None:
        if type(self.action_dist) is MaskableMultiCategoricalDistribution:
            self.action_dist = PaddedMaskableMultiCategoricalDistribution(self.action_dist.action_dims)
        super()._build(lr_schedule)
        self._set_wait_bias()
        self._set_conditional()

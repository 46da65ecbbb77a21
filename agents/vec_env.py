"""stable-baselines3's VecEnv over the batched debtor world: each debtor slot is one sub-environment.

Rewards are divided by a fixed scale (the scenario's median balance) so that learners see values of
order one without running statistics; the raw EUR figures stay in ``info``. Action masks follow
sb3-contrib's convention (``env_method("action_masks")``). With ``flat_actions=True`` the action space
is ``Discrete(448)`` (the flat codec of ``policies.actions``), for DQN and bandits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from policies.actions import N_ACTIONS, decode_flat
from policies.decision import joint_mask
from policies.features import N_FEATURES
from policies.schema import ACTION_DIMS
from sim.config import Scenario
from sim.envs import DebtorBatchEnv
from sim.world import REWARD_COMPONENTS


class DebtorVecEnv(VecEnv):
    """The batched debtor world seen by stable-baselines3 as ``n_slots`` environments."""

    def __init__(
        self, scenario: Scenario, n_slots: int, seed: int, horizon_days: int | None = None, flat_actions: bool = False, latent: str = "none"
    ) -> None:
        self.scenario = scenario
        self.batch = DebtorBatchEnv(scenario, n_slots, horizon_days=horizon_days, episode_days=10**9, latent=latent)
        # with latent ("all" or "state") each observation also carries the debtor's latent columns (sim.envs.LatentView)
        # after the N_FEATURES observable ones, for a critic that trains on them; the actor never reads them
        self.latent_width = self.batch.latent.width if self.batch.latent is not None else 0
        self.flat_actions = flat_actions
        self.reward_scale = float(scenario.population.balance.median_eur)
        self._seed = seed
        obs_space = spaces.Box(low=-1.0, high=np.inf, shape=(N_FEATURES + self.latent_width,), dtype=np.float32)
        act_space: spaces.Space = spaces.Discrete(N_ACTIONS) if flat_actions else spaces.MultiDiscrete(np.array(ACTION_DIMS))
        super().__init__(n_slots, obs_space, act_space)
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(n_slots)
        self._ep_len = np.zeros(n_slots, dtype=np.int64)
        self._ep_parts = {k: np.zeros(n_slots) for k in REWARD_COMPONENTS}
        self.actions_taken: list[np.ndarray] = []  # every day's (n_slots, 4) actions, for exact resume
        self.record_actions = False

    # -- VecEnv API
    def reset(self) -> np.ndarray:
        obs, _ = self.batch.reset(seed=self._seed)
        self._ep_return[:] = 0
        self._ep_len[:] = 0
        for v in self._ep_parts.values():
            v[:] = 0
        self.actions_taken.clear()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        a = decode_flat(self._actions.reshape(-1)) if self.flat_actions else self._actions.reshape(self.num_envs, 4).astype(np.int64)
        if self.record_actions:
            self.actions_taken.append(a.astype(np.int8))
        out = self.batch.advance(a)
        res = out.result
        self._ep_return += res.reward
        self._ep_len += 1
        for k in REWARD_COMPONENTS:
            self._ep_parts[k] += res.components[k]
        dones = np.zeros(self.num_envs, dtype=bool)
        dones[out.done_slots] = True
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for j, i in enumerate(out.done_slots):
            info = infos[i]
            info["terminal_observation"] = out.final_obs[j]
            # a debtor sold at the horizon ends there: the sale's proceeds are its last reward, so no value
            # follows. Reported as a time-limit truncation, SB3 would add gamma * V(last observation) to
            # that reward (its bootstrap for cut-off episodes) and count the debtor's worth twice
            info["TimeLimit.truncated"] = False
            info["sold"] = bool(res.truncated[i])
            info["episode"] = {"r": float(self._ep_return[i]), "l": int(self._ep_len[i])}
            info["business"] = {k: float(self._ep_parts[k][i]) for k in REWARD_COMPONENTS}
            self._ep_return[i] = 0.0
            self._ep_len[i] = 0
            for v in self._ep_parts.values():
                v[i] = 0.0
        return out.obs, (res.reward / self.reward_scale).astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def action_masks(self) -> np.ndarray:
        m = self.batch.world.action_mask()
        return joint_mask(m) if self.flat_actions else m

    def _indices(self, indices: int | Iterable[int] | None) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def env_method(self, method_name: str, *method_args: Any, indices: int | Iterable[int] | None = None, **method_kwargs: Any) -> list[Any]:
        if method_name != "action_masks":
            raise AttributeError(f"DebtorVecEnv sub-environments have no method {method_name!r}")
        masks = self.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def get_attr(self, attr_name: str, indices: int | Iterable[int] | None = None) -> list[Any]:
        value = {"render_mode": None, "reward_scale": self.reward_scale}.get(attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: int | Iterable[int] | None = None) -> None:
        raise AttributeError("DebtorVecEnv attributes are fixed at construction")

    def env_is_wrapped(self, wrapper_class: type, indices: int | Iterable[int] | None = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def seed(self, seed: int | None = None) -> list[int | None]:
        if seed is not None:
            self._seed = seed
        return [self._seed for _ in range(self.num_envs)]

    def replay(self, actions: list[np.ndarray]) -> np.ndarray:
        """Reset and re-apply recorded daily actions: the world is deterministic, so this rebuilds
        exactly the state it had (used to resume a run from a checkpoint). Returns the observations."""
        obs = self.reset()
        for a in actions:
            out = self.batch.advance(a.astype(np.int64))
            res = out.result
            self._ep_return += res.reward
            self._ep_len += 1
            for k in REWARD_COMPONENTS:
                self._ep_parts[k] += res.components[k]
            for i in out.done_slots:
                self._ep_return[i] = 0.0
                self._ep_len[i] = 0
                for v in self._ep_parts.values():
                    v[i] = 0.0
            obs = out.obs
            self.actions_taken.append(a.astype(np.int8))
        return obs

"""The debtor world: scenario configs, population, behaviour, the SimPy world and Gymnasium envs.

Importing ``sim`` registers the Gymnasium environments ``collectrl/Debtor-v1`` (one debtor per
episode) and ``collectrl/DebtorBatch-v0`` (many debtor slots sharing one world).
"""

import gymnasium as gym

from sim.config import ConfigError, Scenario, load_scenario
from sim.world import World

ENV_IDS = ("collectrl/Debtor-v1", "collectrl/DebtorBatch-v0")

if ENV_IDS[0] not in gym.registry:
    gym.register(id=ENV_IDS[0], entry_point="sim.envs:DebtorEnv")
if ENV_IDS[1] not in gym.registry:
    gym.register(id=ENV_IDS[1], entry_point="sim.envs:DebtorBatchEnv")

__all__ = ["ENV_IDS", "ConfigError", "Scenario", "World", "load_scenario"]

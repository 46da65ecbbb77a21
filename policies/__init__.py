"""collectrl's decision contract: views, actions, features, compliance and policies.

This package is the bottom layer. It imports numpy only (never torch, stable-baselines3, SimPy or
Gymnasium), so a production service can depend on it alone.
"""

from policies.base import Policy, make, register, registered
from policies.runtime import ArtifactError, Decision, DecisionFunction, load
from policies.schema import ViewBatch

__all__ = ["ArtifactError", "Decision", "DecisionFunction", "Policy", "ViewBatch", "load", "make", "register", "registered"]

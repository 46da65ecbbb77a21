"""Learners (stable-baselines3 algorithms and contextual bandits) for collectrl's environments."""

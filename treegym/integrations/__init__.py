"""Adapters that let other training libraries drive treegym envs through their own
interfaces (`trl`: TRL's `GRPOTrainer`). Each adapter imports its library lazily, so
importing treegym never needs it."""

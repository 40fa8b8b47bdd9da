"""Ray fixtures; the helpers live in ray_helpers.py, a module name no other folder uses."""

from ray_helpers import ray_local  # noqa: F401 - a fixture pytest must see

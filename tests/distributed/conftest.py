"""Ray fixtures; the helpers live in ray_helpers.py, a module name no other folder uses."""

from ray_helpers import ray_head, ray_local  # noqa: F401 - fixtures pytest must see

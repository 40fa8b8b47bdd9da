"""Every registered env passes Gymnasium's own API checker."""

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import treegym


@pytest.mark.parametrize("env_id", treegym.list_envs())
def test_check_env_passes(env_id: str) -> None:
    env = treegym.make(env_id)
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", treegym.list_envs())
def test_gymnasium_make_builds_the_same_env(env_id: str) -> None:
    env = gymnasium.make(env_id)
    mine = treegym.make(env_id)
    try:
        assert type(env.unwrapped) is type(mine)
        assert env.reset(seed=1)[0] == mine.reset(seed=1)[0]
    finally:
        env.close()
        mine.close()

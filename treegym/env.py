"""`AgentEnv`: a Gymnasium env on text whose episodes can be forked mid-way.

A subclass says three things: how to make a task from a seed (`make_task`), what the
tools are (`@tool` methods acting on the env's state), and what earns reward (`score`,
plus optional per-turn `turn_reward` / `is_terminal`). Everything else — parsing tool
calls, validating arguments, turning every mistake into an observation, capping sizes,
truncation and forking — lives here, so every task behaves the same under a sampler.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import Self

from .errors import ConfigError, EpisodeError, ForkError
from .parsing import ANSWER_FORMAT, CALL_FORMAT, ParsedAction, code_block_calls, parse_action
from .records import Episode, Task, ToolResult, Turn
from .sandboxes.base import Sandbox
from .spaces import PrintableText, to_printable
from .tools import ToolSet, tools_of


class Forkable(ABC):
    """State that copies itself on fork (a Sandbox) instead of being deep-copied.

    Opt-in by name, not by shape: subclass it, or `Forkable.register(cls)`. Anything with
    `fork` and `close` methods would otherwise count, the `os` module included, and an
    env that kept it would call `os.fork()` on every env fork.
    """

    @abstractmethod
    def fork(self) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...


Forkable.register(Sandbox)


class EnvConfig(BaseModel):
    """Keyword arguments every AgentEnv accepts. Subclasses extend it with their own."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(20, ge=1, description="Turns before the episode is truncated.")
    max_action_chars: int = Field(16_000, ge=1, description="Longer actions are refused.")
    max_observation_chars: int = Field(8_000, ge=64, description="Longer observations are cut.")
    max_calls_per_turn: int = Field(8, ge=1, description="Tool calls run per action.")
    code_blocks_as_calls: bool = Field(
        True, description="In an action with no tool call and no answer, run each fenced "
        "```python block as a call of the env's python(code) tool, if it has one.")


def _validate_config(cls: type[AgentEnv], kwargs: dict[str, Any]) -> EnvConfig:
    try:
        return cls.Config(**kwargs)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "config"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown option '{field}'")
            else:
                problems.append(f"{field}: {err['msg']}")
        known = ", ".join(cls.Config.model_fields)
        raise ConfigError(
            f"invalid options for {cls.__name__}: {'; '.join(problems)} (options: {known})"
        ) from None


class AgentEnv(gym.Env[str, str]):
    """A text env whose `fork()` returns an independent env in the same episode state.

    The World is everything tools can change: the env's instance state, deep-copied on
    fork, plus any attribute with its own `fork()` (a Sandbox), which is forked instead.
    """

    Config: ClassVar[type[EnvConfig]] = EnvConfig
    description: ClassVar[str] = ""
    needs_sandbox: ClassVar[bool] = False
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        self.config = _validate_config(type(self), options)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode {render_mode!r} is not supported; "
                f"use one of {self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.action_space = PrintableText(self.config.max_action_chars)
        self.observation_space = PrintableText(self.config.max_observation_chars)
        self.tools = ToolSet(tools_of(type(self)))
        self.task: Task | None = None
        self.turn = 0
        self.history: list[Turn] = []
        self._seed: int | None = None
        self._done = False
        self._closed = False

    # -- what a subclass defines -------------------------------------------------------

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        """A new task drawn from `rng`. Override; envs fed tasks via options may skip it."""
        raise ConfigError(
            f"{type(self).__name__} makes no tasks of its own; pass reset(options={{'task': ...}})"
        )

    def setup(self, task: Task) -> None:
        """Build the world for `task`. Called by every reset, after the task is chosen."""

    def score(self, answer: str) -> float:
        """Reward for a final `<answer>`, which ends the episode."""
        return 0.0

    def turn_reward(self) -> float:
        """Reward earned by the tool calls of the turn just run (shaping)."""
        return 0.0

    def is_terminal(self) -> bool:
        """Whether the world itself ended the episode (the goal is reached, say)."""
        return False

    def demonstration(self, rng: np.random.Generator, optimal: float = 1.0) -> list[str]:
        """Actions that play the task just reset, for a supervised warm start.

        Each action follows the task's solution with probability `optimal` and is
        otherwise a well-formed wrong step, so a warm start can teach the action format
        while leaving the solving to RL. Override it to make an env warm-startable;
        `has_demonstration` tells envs that did apart from those that did not.
        """
        raise ConfigError(
            f"{type(self).__name__} defines no demonstration(), so it can't be warm-started: "
            "override AgentEnv.demonstration, start from init_weights, or drop warm_start"
        )

    @classmethod
    def has_demonstration(cls) -> bool:
        return cls.demonstration is not AgentEnv.demonstration

    def render_text(self) -> str:
        """The ANSI rendering. The default is the last observation."""
        if self.history:
            return self.history[-1].observation
        return self.task.prompt if self.task is not None else ""

    # -- Gymnasium API -----------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self._check_open()
        super().reset(seed=seed)
        options = dict(options or {})
        task = options.pop("task", None)
        if task is None:
            task = self.make_task(self.np_random, options)
        elif not isinstance(task, Task):
            try:
                task = Task.model_validate(task)
            except ValidationError as exc:
                raise ConfigError(f"reset(options={{'task': ...}}) is not a Task: {exc}") from None
        self.task = task
        self.turn = 0
        self.history = []
        self._seed = seed
        self._done = False
        self.setup(task)
        info = {"task": task.model_copy(deep=True), "tools": copy.deepcopy(self.tools.schemas)}
        return to_printable(task.prompt), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self._check_open()
        if self.task is None:
            raise EpisodeError("step() before reset(): call env.reset(seed=...) first")
        if self._done:
            raise EpisodeError(
                "the episode is over; call reset() for a new one, or fork() before the end"
            )
        if not isinstance(action, str):
            raise TypeError(f"an action is text (str), not {type(action).__name__}")
        parsed = self._parse(action)
        results = [self.tools.execute(call, owner=self) for call in parsed.calls]
        reward = float(self.turn_reward())
        terminated = bool(self.is_terminal())
        if parsed.answer is not None:
            reward += float(self.score(parsed.answer))
            terminated = True
        self.turn += 1
        truncated = not terminated and self.turn >= self.config.max_turns
        self._done = terminated or truncated
        observation = self._observation(results, parsed.errors)
        parse_error = "; ".join(parsed.errors) or None
        turn = Turn(
            index=self.turn - 1, action=action, calls=parsed.calls, results=results,
            answer=parsed.answer, parse_error=parse_error, observation=observation,
            reward=reward, terminated=terminated, truncated=truncated,
        )
        self.history.append(turn)
        info = {
            "turn": turn.index,
            "calls": [c.model_copy(deep=True) for c in turn.calls],
            "results": [r.model_copy(deep=True) for r in turn.results],
            "parse_error": parse_error,
            "answer": parsed.answer,
        }
        return observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        return self.render_text() if self.render_mode == "ansi" else None

    def fork(self) -> Self:
        """An independent env in this exact episode state; neither sees the other's steps."""
        self._check_open()
        memo: dict[int, Any] = {id(self.spec): self.spec} if self.spec is not None else {}
        forked: list[Any] = []
        try:
            for value in vars(self).values():
                if isinstance(value, Forkable):
                    memo[id(value)] = value.fork()
                    forked.append(memo[id(value)])
            return copy.deepcopy(self, memo)
        except Exception as exc:
            for value in forked:
                value.close()
            raise ForkError(
                f"cannot fork {type(self).__name__}: {type(exc).__name__}: {exc}. Keep live "
                "resources in a Sandbox, or make the env's attributes deep-copyable"
            ) from exc

    def close(self) -> None:
        """Free the world (sandboxes included). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for value in vars(self).values():
            if isinstance(value, Forkable):
                value.close()

    # -- records -----------------------------------------------------------------------

    def episode(self) -> Episode:
        """The episode so far as a record, ready for `write_jsonl`."""
        if self.task is None:
            raise EpisodeError("no episode yet: call env.reset() first")
        return Episode(
            env_id=self.spec.id if self.spec is not None else None,
            seed=self._seed,
            task=self.task.model_copy(deep=True),
            tools=copy.deepcopy(self.tools.schemas),
            turns=[turn.model_copy(deep=True) for turn in self.history],
        )

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EpisodeError("the env is closed; make a new one with treegym.make(...)")

    def _parse(self, action: str) -> ParsedAction:
        limit = self.config.max_action_chars
        if len(action) > limit:
            return ParsedAction(
                errors=[f"the action is {len(action)} characters; the limit is {limit}. "
                        "Nothing was run; write a shorter action"]
            )
        parsed = parse_action(action, max_calls=self.config.max_calls_per_turn)
        if (not parsed.calls and parsed.answer is None and not parsed.errors
                and self.config.code_blocks_as_calls and "python" in self.tools):
            parsed.calls = code_block_calls(action, "python",
                                            max_calls=self.config.max_calls_per_turn)
        if not parsed.calls and parsed.answer is None and not parsed.errors:
            parsed.errors.append(f"no tool call or answer found. Call a tool by writing "
                                 f"{CALL_FORMAT}, or finish with {ANSWER_FORMAT}")
        return parsed

    def _observation(self, results: list[ToolResult], errors: list[str]) -> str:
        """Results, then the action's problems and (once) the tools that would have worked.

        A model that got the format wrong learns the fix from the tool list in the same
        place; it is the unknown-tool error's format, so every error reads alike.
        """
        hint = [f"Available tools: {self.tools.usage()}"] if errors else []
        text = to_printable("\n".join([r.output for r in results] + errors + hint))
        limit = self.config.max_observation_chars
        if len(text) > limit:
            marker = f"\n[... {len(text) - limit} characters cut]"
            text = text[: limit - len(marker)] + marker
        return text

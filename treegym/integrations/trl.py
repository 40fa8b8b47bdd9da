"""Train on a treegym env with TRL's `GRPOTrainer`, through its `environment_factory`.

TRL (>= 1.0) runs multi-turn tool episodes itself: it asks `environment_factory()` for
one object per rollout, calls its `reset(**dataset_row)`, shows the model every public
method as a tool (schema from type hints and docstring), runs the tool calls the model
writes, and ends the rollout when the model replies without one. This module makes such
an object out of any in-process treegym env:

- `EnvFactory(env_id, **env_kwargs)` is the `environment_factory`. Each instance it makes
  owns one treegym env; its tool methods are the env's `@tool`s. A tool call runs as one
  `env.step` of that call, so turn limits, validation, error observations and per-turn
  rewards are the env's own.
- `episode_reward` is the reward function. TRL ends an episode on a reply with no tool
  call, so that reply is the final answer: it is sent to the env as its `<answer>` (as
  is, if the model wrote the tags), and the reward is the episode's return, the sum of
  every step's reward, exactly what a treegym rollout would score.
- `task_rows(n)` is a dataset of n seeds: TRL appends each env's task prompt, from
  `reset(seed=...)`, to the row's empty user message.
- `prepare_tokenizer` gives ChatML models whose template TRL cannot parse tool calls from
  (SmolLM2's has no tool role, `tiny`'s is treegym's own) TRL's Qwen2.5 template.

What TRL's interface cannot express: a tree. Every rollout is an independent chain from
the prompt; there is no fork mid-episode, so no shared-prefix reuse of the env's world or
of the model's context, and GRPO's group is the `num_generations` chains of one prompt.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import cache
from types import TracebackType
from typing import Any, TypeVar

import treegym
from treegym.env import AgentEnv
from treegym.errors import ConfigError
from treegym.parsing import answer_text, parse_action, tool_call_text
from treegym.registry import REMOTE_PREFIX
from treegym.tools import Tool, tools_of

SYSTEM_PROMPT = ("You solve tasks in an environment. Call its tools when they help. "
                 "Your last reply, the one without a tool call, is your final answer.")
# TRL treats these names, and every `_name`, as not-a-tool; an env tool so named would vanish.
_RESERVED = frozenset({"reset", "get_reward"})
TokenizerT = TypeVar("TokenizerT")


class TreegymEnvironment:
    """One rollout's env, in the shape TRL's `environment_factory` wants.

    Only `reset` and the tool methods a subclass adds (see `environment_class`) are
    public: TRL offers every other public method to the model as a tool.
    """

    def __init__(self, env: AgentEnv) -> None:
        self.env = env  # an attribute, not a method, so TRL does not offer it as a tool
        self._return = 0.0
        self._done = False

    def reset(self, seed: int | None = None, **row: Any) -> str:
        """Start the episode of `seed` (a dataset column); TRL appends the returned task
        prompt to the row's last user message. Other columns, the prompt among them, are
        TRL's business and ignored here."""
        prompt, _ = self.env.reset(seed=seed)
        self._return = 0.0
        self._done = False
        return prompt

    def _step(self, action: str) -> str:
        observation, reward, terminated, truncated, _ = self.env.step(action)
        self._return += reward
        self._done = terminated or truncated
        return observation

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        if self._done:
            # TRL shows a raised tool error to the model as {"error": ...} and counts it.
            raise RuntimeError("the episode is over; reply with your final answer")
        return self._step(tool_call_text(name, arguments))

    def _finish(self, completion: list[dict[str, Any]]) -> float:
        """Submit the completion's final reply as the answer, unless the episode already
        ended (a tool reached the goal, or the turns ran out), and return the episode's
        return. A completion that ends on a tool result (TRL's tool-call or length cap
        cut it) has no final reply, so nothing is submitted."""
        last = completion[-1] if completion else {}
        if not self._done and last.get("role") == "assistant" and not last.get("tool_calls"):
            text = last.get("content") or ""
            has_answer = parse_action(text).answer is not None
            self._step(text if has_answer else answer_text(text))
        return self._return


def _tool_method(tool: Tool) -> Callable[..., str]:
    """A method TRL can offer as `tool`: the tool's own parameters and type hints, and a
    Google-style docstring made from its schema (transformers builds the tool schema from
    those two), that runs the call as one env step."""

    def method(self: TreegymEnvironment, **arguments: Any) -> str:
        return self._call(tool.name, arguments)

    params = list(inspect.signature(tool.fn).parameters.values())
    if tool.is_method:
        params = params[1:]
    hints = typing.get_type_hints(tool.fn)
    properties = tool.schema["function"]["parameters"]["properties"]
    docs = [f"    {p.name}: {properties[p.name].get('description') or p.name}" for p in params]
    method.__name__ = method.__qualname__ = tool.name
    method.__doc__ = "\n".join([tool.description or tool.name, "", "Args:", *docs]) if docs \
        else tool.description or tool.name
    # No return hint: transformers would add it to the schema, which treegym's lacks.
    method.__annotations__ = {p.name: hints.get(p.name, str) for p in params}
    method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    return method


@cache
def environment_class(env_cls: type[AgentEnv]) -> type[TreegymEnvironment]:
    """The TreegymEnvironment subclass whose methods are `env_cls`'s tools (one per env
    class: TRL finds tools with `inspect.getmembers`, so they must be real methods)."""
    tools = tools_of(env_cls)
    clash = [t.name for t in tools if t.name in _RESERVED or t.name.startswith("_")]
    if clash:
        raise ConfigError(f"{env_cls.__name__} has tools TRL would not offer the model: "
                          f"{', '.join(clash)}; rename them (@tool(name=...))")
    methods = {t.name: _tool_method(t) for t in tools}
    return type(f"{env_cls.__name__}ForTRL", (TreegymEnvironment,), methods)


class EnvFactory:
    """TRL's `environment_factory` for one treegym env id; also closes every env it made.

    Use it as a context manager around `trainer.train()`, so the envs' sandboxes (a live
    interpreter per rollout for PyCalc) are closed when training ends.
    """

    def __init__(self, env_id: str, **env_kwargs: Any) -> None:
        if env_id.startswith(REMOTE_PREFIX):
            # TRL reads the tools from the object's methods when the trainer starts; a
            # served env names its tools only after a reset, over the wire.
            raise ConfigError("EnvFactory runs envs in-process; TRL's environment_factory "
                              "cannot see a remote env's tools. Use the env id itself")
        self.env_id = env_id
        self.env_kwargs = env_kwargs
        self.made: list[TreegymEnvironment] = []

    def __call__(self) -> TreegymEnvironment:
        env = treegym.make(self.env_id, **self.env_kwargs)
        made = environment_class(type(env))(env)
        self.made.append(made)
        return made

    def close(self) -> None:
        for made in self.made:
            made.env.close()
        self.made.clear()

    def __enter__(self) -> EnvFactory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def episode_reward(completions: list[list[dict[str, Any]]],
                   environments: list[TreegymEnvironment], **_: Any) -> list[float]:
    """TRL reward function: each rollout's env return, after its final reply was
    answered (see TreegymEnvironment._finish). TRL logs it as `rewards/episode_reward`."""
    return [env._finish(completion) for env, completion in zip(environments, completions,
                                                                strict=True)]


def task_rows(count: int, *, seed: int = 0, system: str = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """`count` dataset rows, seeds `seed`...: a system message and an empty user message
    that TRL fills with each env's task prompt. `datasets.Dataset.from_list` takes them."""
    return [{"prompt": [{"role": "system", "content": system}, {"role": "user", "content": ""}],
             "seed": seed + i} for i in range(count)]


def prepare_tokenizer(tokenizer: TokenizerT) -> TokenizerT:
    """The tokenizer, ready for TRL's tool loop. TRL parses tool calls only from chat
    templates it knows. A ChatML one it doesn't (SmolLM2's, `tiny`'s) gets TRL's Qwen2.5
    template: the same <|im_start|> tokens, and Hermes <tool_call> JSON, the format
    treegym's own parser reads. A known template is left as it is."""
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template

    try:
        add_response_schema(tokenizer)  # type: ignore[type-var]
    except ValueError:
        template = getattr(tokenizer, "chat_template", None) or ""
        if "<|im_start|>" not in template:
            raise ConfigError("TRL cannot parse tool calls from this tokenizer's chat template "
                              "and it is not ChatML; set its response_template yourself") from None
        tokenizer.chat_template = qwen2_5_chat_template  # type: ignore[attr-defined]
    return tokenizer

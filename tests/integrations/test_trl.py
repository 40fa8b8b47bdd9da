"""TRL's GRPOTrainer trains on treegym envs through its `environment_factory`
(treegym.integrations.trl): 2 steps of SmolLM2-135M-Instruct whose rewards are the env's,
and the adapter driving PyCalc's sandboxed interpreter step by step.

Skips with a reason without trl (`pip install 'treegym[trl]'`), unless
TREEGYM_REQUIRE_TRL=1 (CI), where that is a failure; the SmolLM2 run likewise needs the
smollm2 extra (TREEGYM_REQUIRE_SMOLLM2).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pytest
from helpers import require_smollm2, skip_unless_required, user_cache

import treegym
from treegym import AgentEnv, Task, tool
from treegym.integrations.trl import EnvFactory, episode_reward, prepare_tokenizer, task_rows


class WordsEnv(AgentEnv):
    """Reply in a given number of words; the nearer the count, the higher the reward.

    The reward is graded, not right-or-wrong, so even an untrained model's group of replies
    has a spread for GRPO to learn from: on PyCalc, SmolLM2 scores 0 on every reply, every
    advantage is 0 and no weight would move in 2 steps.
    """

    description = "Test env: reply with exactly n words."

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        n = int(rng.integers(3, 13))
        return Task(id=f"words-{n}", prompt=f"Reply with exactly {n} words.", answer=n)

    @tool
    def count_words(self, text: str) -> str:
        """Count the words in a text.

        Args:
            text: the text whose words to count.
        """
        return str(len(text.split()))

    def score(self, answer: str) -> float:
        return 1.0 / (1.0 + abs(len(answer.split()) - self.task.answer))


treegym.register("tests/Words-v0", entry_point=WordsEnv)


@pytest.fixture(autouse=True)
def need_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError as exc:
        skip_unless_required("TREEGYM_REQUIRE_TRL", f"trl is not installed ({exc}); "
                             "pip install 'treegym[trl]'")


def test_adapter_runs_pycalc_tools_as_env_steps_and_scores_the_final_reply():
    from transformers.utils import get_json_schema

    with EnvFactory("treegym/PyCalc-v0", kinds=["arithmetic"], max_turns=3) as factory:
        rollout = factory()
        prompt = rollout.reset(seed=4, prompt=[{"role": "user", "content": ""}])
        env = rollout.env
        assert prompt == env.task.prompt
        # What TRL shows the model is PyCalc's own tool schema.
        shown = get_json_schema(rollout.python)["function"]
        own = env.tools.schemas[0]["function"]
        own["parameters"].pop("additionalProperties")
        assert shown == own
        # Each call is one env step in the sandbox's persistent interpreter.
        expr = prompt.removeprefix("Compute ").split(". Answer")[0]
        assert rollout.python(code=f"x = {expr}") == "[no output]"
        assert rollout.python(code="print(x)") == str(env.task.answer)
        assert [t.calls[0].name for t in env.history] == ["python", "python"]
        # The reply without a tool call is the answer; the reward is the episode's return.
        final = [{"role": "assistant", "content": f"{env.task.answer}"}]
        assert episode_reward([final], [rollout]) == [1.0]
        assert env.history[-1].answer == str(env.task.answer) and len(env.history) == 3
        with pytest.raises(RuntimeError, match="episode is over"):
            rollout.python(code="print(1)")

        rollout.reset(seed=4)
        wrong = [{"role": "assistant", "content": "I think it is <answer>7</answer>."}]
        assert episode_reward([wrong], [rollout]) == [0.0]
        assert env.history[-1].answer == "7"
    assert factory.made == []


def test_grpo_trainer_runs_two_steps_on_smollm2_with_env_rewards(tmp_path):
    require_smollm2()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from treegym.policy import smollm2_path

    with user_cache():
        path = smollm2_path()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    assert tokenizer.chat_template == qwen2_5_chat_template  # SmolLM2's has no tool role
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    batches: list[dict[str, list[Any]]] = []

    def recorded(completions, environments, **kwargs):
        rewards = episode_reward(completions, environments, **kwargs)
        batches.append({
            "rewards": rewards,
            "returns": [sum(t.reward for t in e.env.history) for e in environments],
            "answers": [e.env.history[-1].answer for e in environments],
            "tasks": [e.env.task.id for e in environments],
        })
        return rewards

    args = GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=48, max_tool_calling_iterations=2, learning_rate=1e-5,
        temperature=1.0, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        seed=0,
    )
    with EnvFactory("tests/Words-v0", max_turns=3) as factory:
        trainer = GRPOTrainer(
            model=model, processing_class=tokenizer, reward_funcs=recorded, args=args,
            environment_factory=factory, train_dataset=Dataset.from_list(task_rows(8)))
        trainer.train()
        assert len(factory.made) == 4  # one env per rollout, reused across steps

    print("rewards per step:", [[round(r, 3) for r in b["rewards"]] for b in batches])
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == len(batches) == 2
    for entry, batch in zip(logged, batches, strict=True):
        # The rewards are the envs' own returns, and the trainer logged exactly those.
        assert batch["rewards"] == batch["returns"]
        assert all(a is not None for a in batch["answers"])  # every final reply was scored
        assert len(set(batch["tasks"])) == 1  # a GRPO group: one task, 4 rollouts
        assert entry["rewards/recorded/mean"] == pytest.approx(statistics.mean(batch["rewards"]))
        assert entry["reward"] == pytest.approx(statistics.mean(batch["rewards"]))
    assert any(entry["reward_std"] > 0 for entry in logged)
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert changed, "no weight moved in 2 GRPO steps"

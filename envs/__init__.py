"""Bundled treegym tasks, registered on `import treegym`.

Entry points are strings, so importing this module loads no env code until `make`.
"""

from treegym.registry import register

register("treegym/Maze-v0", entry_point="treegym.envs.maze:MazeEnv")
register("treegym/PyCalc-v0", entry_point="treegym.envs.pycalc:PyCalcEnv")
register("treegym/BugFix-v0", entry_point="treegym.envs.bugfix:BugFixEnv")
register("treegym/HumanEval-v0", entry_point="treegym.envs.humaneval:HumanEvalEnv")

# reasoning-gym datasets (extra `treegym[tasks]`), sized for a small model: reasoning-gym's
# defaults run to 6 terms of 4 digits. envs/reasoning_gym/README.md has the reasons, and
# `register_reasoning_gym` adds any other dataset.
_REASONING_GYM = {
    "basic_arithmetic": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1,
                         "operators": ["+", "-", "*"], "allow_parentheses": False,
                         "allow_negation": False},
    "chain_sum": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    "countdown": {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 10,
                  "min_target": 10, "max_target": 30},
    "leg_counting": {"min_animals": 1, "max_animals": 3, "min_instances": 1, "max_instances": 3},
    "mini_sudoku": {"min_empty": 4, "max_empty": 6},
}
for _dataset, _config in _REASONING_GYM.items():
    register(f"treegym/RG-{_dataset}-v0", entry_point="treegym.envs.reasoning_gym:ReasoningGymEnv",
             kwargs={"dataset": _dataset, "dataset_config": _config})

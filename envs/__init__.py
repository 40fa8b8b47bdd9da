"""Bundled treegym tasks, registered on `import treegym`.

Entry points are strings, so importing this module loads no env code until `make`.
"""

from treegym.registry import register

register("treegym/Maze-v0", entry_point="treegym.envs.maze:MazeEnv")
register("treegym/PyCalc-v0", entry_point="treegym.envs.pycalc:PyCalcEnv")
register("treegym/BugFix-v0", entry_point="treegym.envs.bugfix:BugFixEnv")

"""`treegym play` in a real terminal: tmux types the keys and reads the screen back.

Skips when tmux is missing, unless TREEGYM_REQUIRE_UI=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_unless_required
from test_cli import TREEGYM

from treegym import Tree, read_jsonl
from treegym.sandboxes.local import worker_processes

TMUX = shutil.which("tmux")
PROMPT = r"b\d+ t\d+>"


@pytest.fixture(autouse=True)
def _need_tmux() -> None:
    if TMUX is None:
        skip_unless_required("TREEGYM_REQUIRE_UI", "tmux is not installed (apt-get install tmux)")


class Pane:
    """One command in a private tmux server; `type` sends a line and waits for its answer."""

    def __init__(self, command: str, socket: str) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-u", "-L", socket, "-f", "/dev/null"]
        script = f"{command}; echo EXITED $?; sleep 600"
        self.tmux("new-session", "-d", "-x", "180", "-y", "50", "bash", "-c", script)

    def tmux(self, *args: str) -> str:
        env = {**os.environ, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, env=env,
                              timeout=30)
        assert done.returncode == 0, f"tmux {' '.join(args[:1])} failed: {done.stderr.strip()}"
        return done.stdout

    def screen(self) -> str:
        """The whole scrollback, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-E", "-")

    def wait(self, pattern: str, *, count: int = 1, timeout: float = 60) -> str:
        """Wait until `pattern` (a regex) occurs `count` times on the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if len(re.findall(pattern, screen)) >= count:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} ({count}x) on screen:\n{screen}")
            time.sleep(0.1)

    def type(self, line: str, expect: str, *, timeout: float = 60) -> str:
        """Type `line` + Enter; wait for one more `expect` and the next prompt after it."""
        screen = self.screen()
        seen, prompts = len(re.findall(expect, screen)), len(re.findall(PROMPT, screen))
        self.tmux("send-keys", "-l", line)
        self.tmux("send-keys", "Enter")
        self.wait(expect, count=seen + 1, timeout=timeout)
        return self.wait(PROMPT, count=prompts + 1, timeout=timeout)

    def server_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "#{pid}").strip())

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def pane_factory(request: pytest.FixtureRequest) -> Iterator:
    panes: list[Pane] = []

    def start(*args: str) -> Pane:
        assert TREEGYM, "the treegym console script is not installed next to this python"
        pane = Pane(shlex.join([TREEGYM, "play", *args]),
                    socket=f"treegym-test-{uuid.uuid4().hex[:12]}")
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.kill()


def assert_gone(workers: list[int]) -> None:
    """The session's sandbox workers exit within 10 s of the session ending."""
    deadline = time.monotonic() + 10
    while set(workers) & set(worker_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(workers) & set(worker_processes()), "sandboxes outlived the session"


def test_play_maze_step_fork_back_switch_save(pane_factory, tmp_path: Path) -> None:
    out = tmp_path / "maze.jsonl"
    pane = pane_factory("treegym/Maze-v0", "--seed", "0")
    screen = pane.wait(PROMPT)
    assert "move(direction: north|south|east|west)" in screen and "look()" in screen
    assert "turn 0/24" in screen
    pane.type("look", r"at 0,0\. open: east\.")
    pane.type("move east", r"moved east\. at 1,0")
    pane.type("/fork", "branch 2 made at turn 2; now on branch 2")
    screen = pane.type("move west", r"moved west\. at 0,0")
    assert "[branch 2/2 · turn 3/24 · return 0]" in screen
    pane.type("/back", r"back at turn 2 \(kept world, no re-run\)")
    screen = pane.type("/branches", r"\* 2\. turn 2 at #1")
    assert '  1. turn 2 at #1 · open · return 0 · move(direction="east")' in screen
    pane.type("/go 1", "on branch 1")
    pane.type('{"name": "move", "arguments": {"direction": "east"}}', r"moved east\. at 2,0")
    pane.type("fly away", r"! unknown tool 'fly'; tools: look, move")
    pane.type("/go 7", r"! no branch 7; there are 2")
    screen = pane.type("/tree", r"prompt: Maze 4x4")
    tree_lines = screen[screen.rindex("prompt: Maze 4x4"):]
    assert '#2 move(direction="west") -> moved west. at 0,0' in tree_lines
    assert re.search(r'#3 move\(direction="east"\) -> moved east\. at 2,0.*<- b1\*', tree_lines)
    assert re.search(r"#1 move.*<- b2\n", tree_lines)
    screen = pane.type("/world", r"\+--\+--\+--\+--\+\n")  # the maze, the agent at 2,0
    assert "\n|      A    |\n" in screen[screen.rindex("/world"):]
    pane.type("answer 5", r"episode over: terminated")
    pane.type(f"/save {out}", r"saved 1 tree \(5 turns, 1 finished\)")
    pane.tmux("send-keys", "C-d")
    pane.wait(r"bye: 5 turns on 2 branches")
    pane.wait(r"EXITED 0")

    [tree] = read_jsonl(out, Tree)
    assert tree.env_id == "treegym/Maze-v0" and tree.policy == "human"
    assert [(n.id, n.parent, n.depth) for n in tree.nodes] == [
        (0, None, 1), (1, 0, 2), (2, 1, 3), (3, 1, 3), (4, 3, 4)]
    assert [c.arguments for c in tree.nodes[3].calls] == [{"direction": "east"}]
    assert tree.nodes[3].observation.startswith("moved east. at 2,0")
    assert tree.kept == [4] and tree.nodes[4].terminated


def test_play_pycalc_sandbox_with_a_model(pane_factory, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="/model and /auto need the torch extra")
    out = tmp_path / "pycalc.jsonl"
    pane = pane_factory("treegym/PyCalc-v0", "--seed", "1", "--sandbox", "local",
                        "--policy", "tiny", "--max-tokens", "8", "--env-opt", "max_turns=5")
    pane.wait(PROMPT, timeout=120)
    pane.type("python: x = 41", r"turn 1/5")
    pane.type("/fork", "now on branch 2")
    pane.type("python: x += 1; print(x)", r"\n42\n")
    pane.type("/back", r"back at turn 1")
    pane.type("python: print(x)", r"\n41\n")  # the kept interpreter, not the branch's
    pane.type("/go 1", "on branch 1")
    pane.type("python: open('note.txt', 'w').write('hi'); print(x)", r"\n41\n")
    pane.type("/world", r"files:\n  note\.txt")
    pane.type("/model 2", r"pick 1-2", timeout=120)
    pane.type("1", r"turn 3 \(policy\)")
    pane.type("/auto", r"episode over: truncated", timeout=120)
    workers = worker_processes(ancestor=pane.server_pid())
    assert workers, "a sandbox env should be running sandbox workers"
    pane.type(f"/save {out}", r"saved 1 tree \(7 turns, 1 finished\)")
    pane.tmux("send-keys", "C-c")
    pane.wait(r"bye: 7 turns on 2 branches")
    pane.wait(r"EXITED 0")
    assert_gone(workers)

    [tree] = read_jsonl(out, Tree)
    assert [n.parent for n in tree.nodes] == [None, 0, 0, 0, 3, 4, 5]
    assert [n.made_by for n in tree.nodes] == ["human"] * 4 + ["policy"] * 3
    assert [n.observation for n in tree.nodes[1:3]] == ["42", "41"]
    assert tree.prompt_ids and all(
        len(n.action_ids) == len(n.action_logprobs) > 0 for n in tree.nodes)
    assert tree.kept == [6] and tree.nodes[6].truncated


def test_play_pycalc_ctrl_d_closes_every_sandbox(pane_factory) -> None:
    pane = pane_factory("treegym/PyCalc-v0", "--seed", "1", "--sandbox", "local",
                        "--env-opt", "max_turns=5")
    pane.wait(PROMPT, timeout=120)
    pane.type("python: x = 41", r"turn 1/5")
    pane.type("/fork", "now on branch 2")
    pane.type("python: print(x)", r"\n41\n")
    workers = worker_processes(ancestor=pane.server_pid())
    assert workers, "a sandbox env should be running sandbox workers"
    pane.tmux("send-keys", "C-d")
    pane.wait(r"bye: 2 turns on 2 branches")
    pane.wait(r"EXITED 0")
    assert_gone(workers)

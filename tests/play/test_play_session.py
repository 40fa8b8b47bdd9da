"""The play session: forks keep worlds, /back re-runs nothing, the saved tree is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CounterEnv, call

from treegym import Tree, read_jsonl
from treegym.play import Controller, Outcome, PlayError, PlaySession
from treegym.spaces import to_printable

MOVES = [call("move", direction=d) for d in ("north", "south", "east", "west")]


def test_back_fork_and_go_reuse_kept_worlds_without_re_running() -> None:
    with PlaySession("treegym/Counter-v0", seed=3) as s:
        s.step(call("add", amount=2))
        s.step(call("add", amount=3))
        ran = CounterEnv.executions
        assert s.env.total == 5
        s.fork()
        s.step(call("add", amount=10))
        assert s.env.total == 15
        s.back()
        assert s.env.total == 5 and s.head == 1
        s.go(0)
        assert s.env.total == 5
        s.back()
        s.back()
        assert s.head is None and s.env.total == 0
        assert CounterEnv.executions == ran + 1, "moving around must not run any tool"
        s.step(call("add", amount=7))
        assert s.env.total == 7 and s.nodes[-1].parent is None
        with pytest.raises(PlayError, match="already at the start"):
            s.back()
            s.back()
        with pytest.raises(PlayError, match="no branch 5"):
            s.go(4)


def test_finished_branch_refuses_steps_and_tree_records_every_turn(tmp_path: Path) -> None:
    with PlaySession("treegym/Counter-v0", seed=3) as s:
        s.step(call("add", amount=1))
        s.fork()
        s.step(f"<answer>{s.task.answer}</answer>")
        assert s.finished(s.head) and s.episode_return(s.head) == 1.0
        with pytest.raises(PlayError, match="finished"):
            s.step(call("add", amount=1))
        with pytest.raises(PlayError, match="finished"):
            s.fork()
        s.go(0)
        s.step("<answer>0</answer>")
        tree = s.save(tmp_path / "s.jsonl")
    [again] = read_jsonl(tmp_path / "s.jsonl", Tree)
    assert again == tree
    assert [(n.id, n.parent) for n in tree.nodes] == [(0, None), (1, 0), (2, 0)]
    assert tree.kept == tree.leaves == [1, 2]
    assert [tree.reward(leaf) for leaf in tree.kept] == [1.0, 0.0]
    assert tree.policy == "human" and {n.made_by for n in tree.nodes} == {"human"}


def test_close_closes_every_kept_world() -> None:
    s = PlaySession("treegym/Counter-v0", seed=3)
    s.step(call("add", amount=1))
    s.fork()
    s.step(call("add", amount=1))
    envs = [p.env for p in s.points.values()]
    s.close()
    s.close()
    assert len(envs) == 3 and all(env._closed for env in envs)


@pytest.fixture(scope="module")
def menu() -> object:
    pytest.importorskip("transformers", reason="a policy needs the torch extra's tokenizer")
    from treegym.policy import MenuPolicy, load_tokenizer, tiny_path

    return MenuPolicy(load_tokenizer(tiny_path()), MOVES + ["<answer>done</answer>"], seed=1)


def test_model_turns_keep_sampled_ids_and_the_prefix_tracks_the_tree(menu: object) -> None:
    with PlaySession("treegym/Maze-v0", seed=0, policy=menu, policy_name="menu",
                     env_kwargs={"max_turns": 6}) as s:
        s.step(call("look"))
        proposals = s.propose(3)
        assert len(proposals) == 3 and all(p.gen.ids for p in proposals)
        picked = proposals[1].gen
        node = s.take(1)
        assert (node.made_by, node.action, node.action_ids) == ("policy", picked.text, picked.ids)
        assert s.proposals == [] and all(p.ctx.released for p in proposals)
        s.fork()
        s.auto()
        assert s.finished(s.head)
        tree = s.to_tree()
        assert tree.policy == "human+menu"
        human = tree.nodes[0]
        assert human.made_by == "human" and human.action_logprobs == [0.0] * len(human.action_ids)
        for node in tree.nodes:
            assert len(node.action_logprobs) == len(node.action_ids) > 0
            point = s.points[node.id]
            if node.is_leaf:
                assert point.ctx is None
            else:  # the kept KV prefix is exactly the tree's ids along the path
                assert point.ctx.ids == tree.trajectory(node.id).ids
        assert {n.made_by for n in tree.nodes} == {"human", "policy"}
        live = [p.ctx for p in s.points.values() if p.ctx is not None]
    assert all(ctx.released for ctx in live)


def test_model_proposals_discarded_or_edited_leave_no_model_turn(menu: object) -> None:
    lines: list[str] = []
    with PlaySession("treegym/Maze-v0", seed=0, policy=menu, policy_name="menu",
                     env_kwargs={"max_turns": 6}) as s:
        c = Controller(s, lines.append)
        c.handle("/model 2")
        dropped = list(s.proposals)
        assert len(dropped) == 2 and c.handle("") == Outcome()  # Enter drops them
        assert lines[-1] == "proposals discarded" and s.proposals == [] and s.nodes == []
        c.handle("/model 2")
        offered = list(s.proposals)
        edit = c.handle("e 2")
        assert edit.prefill == to_printable(offered[1].gen.text) and not edit.quit
        assert lines[-1].startswith("edit the action") and s.proposals == [] and s.nodes == []
        assert all(p.ctx.released for p in dropped + offered)
        c.handle(edit.prefill)  # Enter on the prefilled line: the person's own turn
        [node] = s.nodes
        assert (node.made_by, node.action) == ("human", edit.prefill)
        assert node.action_logprobs == [0.0] * len(node.action_ids) != []


def test_controller_turns_bad_input_into_one_line_and_goes_on(tmp_path: Path) -> None:
    lines: list[str] = []
    with PlaySession("treegym/Maze-v0", seed=0) as s:
        c = Controller(s, lines.append)
        for typed in ["fly", "/nope", "/go x", "/go 3", "/back", "/model", "/auto", "/save",
                      "1", "e 1"]:
            lines.clear()
            assert c.handle(typed).quit is False
            assert len(lines) == 1 and lines[0].startswith("! "), (typed, lines)
        assert s.nodes == []
        c.handle("look")
        c.handle(f"/save {tmp_path / 't.jsonl'}")
        assert "saved 1 tree (1 turns" in lines[-1]
        assert c.handle("/quit").quit


def test_play_command_errors_are_one_line() -> None:
    from test_cli import treegym

    for args, says in [(["treegym/Maze-v0", "--sandbox", "local"], "runs no sandbox"),
                       (["treegym/Maze-v9"], "treegym/Maze-v0"),
                       (["treegym/PyCalc-v0", "--sandbox", "lxc"], "local or docker")]:
        done = treegym("play", *args)
        assert done.returncode != 0 and says in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_world_file_shows_a_file_bounded_and_refuses_missing_or_outside_paths() -> None:
    from treegym.play.render import WORLD_FILE_CHARS

    lines: list[str] = []
    with PlaySession("treegym/PyCalc-v0", seed=1, env_kwargs={"sandbox": "local"}) as s:
        c = Controller(s, lines.append)
        code = ("open('note.txt', 'w').write('hi\\nthere');"
                f"open('big.txt', 'w').write('x' * {WORLD_FILE_CHARS + 500})")
        c.handle(call("python", code=code))
        c.handle("/world")
        assert "  note.txt" in lines[-1].splitlines()
        c.handle("/world note.txt")
        assert lines[-1] == "note.txt (8 bytes):\nhi\nthere"
        c.handle("/world big.txt")
        assert lines[-1].endswith("x" * 10 + "\n[... 500 more characters not shown]")
        assert len(lines[-1]) < WORLD_FILE_CHARS + 100
        for path, says in [("nope.txt", "No such file or directory"),
                           ("../../etc/passwd", "outside the sandbox's work dir"),
                           ("/etc/passwd", "outside the sandbox's work dir")]:
            lines.clear()
            c.handle(f"/world {path}")
            [line] = lines
            assert line.startswith(f"! cannot show {path}: ") and says in line, line
            assert line.endswith("; /world lists the files")
    with PlaySession("treegym/Maze-v0", seed=0) as s:
        lines.clear()
        Controller(s, lines.append).handle("/world maze.txt")
        assert lines == ["! MazeEnv has no files: its world is the env's state, which /world "
                         "alone shows"]

"""Plain-text views of a play session: tools, turns, the tree, branches, the world.

Plain text on purpose: the same strings go to a terminal, to a pipe and to tests that
read a tmux pane, and none of them may depend on colour or cursor tricks.
"""

from __future__ import annotations

import json
from typing import Any

from ..env import AgentEnv
from ..parsing import parse_action
from ..records import Node
from ..sandbox_env import SandboxEnv
from ..sandboxes import SandboxError
from ..spaces import to_printable
from .session import PlayError, PlaySession, Proposal

WORLD_FILE_CHARS = 4_000  # /world FILE shows this much: a screenful or two, not a dataset

COMMANDS = [
    ("/fork", "make a branch here and switch to it"),
    ("/branches", "list the branches"),
    ("/go N", "switch to branch N"),
    ("/back", "return to the parent turn (its kept world; nothing re-runs)"),
    ("/tree", "draw the tree"),
    ("/world [FILE]", "the sandbox's files, or the env's state; with FILE, that file"),
    ("/model [K]", "let the policy propose K next actions (default 3)"),
    ("/auto", "let the policy finish this branch"),
    ("/save FILE", "write the tree as a Tree record (open with `treegym view FILE`)"),
    ("/tools", "show the tools again"),
    ("/quit", "leave (Ctrl-D and Ctrl-C do too)"),
]


def one_line(text: str, width: int = 60) -> str:
    """Printable, newline-free, at most `width` characters."""
    flat = " ".join(to_printable(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def tool_lines(schemas: list[dict[str, Any]]) -> list[str]:
    """`name(arg: type|choices, opt=default)  description`, one line per tool."""
    lines = []
    for schema in schemas:
        fn = schema["function"]
        params = fn["parameters"]
        required = set(params.get("required", []))
        args = []
        for name, prop in params.get("properties", {}).items():
            kind = "|".join(map(str, prop["enum"])) if "enum" in prop else prop.get("type", "")
            arg = f"{name}: {kind}" if kind else name
            args.append(arg if name in required else f"{arg}={json.dumps(prop.get('default'))}")
        lines.append(f"  {fn['name']}({', '.join(args)})  {fn.get('description', '')}".rstrip())
    return lines


def header(session: PlaySession) -> str:
    policy = session.policy_name or "none (/model and /auto need --policy)"
    return "\n".join([
        f"{session.env_id} · task {session.task.id} · seed {session.seed} · policy {policy}",
        "",
        to_printable(session.prompt),
        "",
        "tools:",
        *tool_lines(session.tools),
        "",
        "Type a tool call (`move north`, `python: print(1)`, or the full <tool_call>…), "
        "`answer TEXT`, or /help.",
    ])


def help_text() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in COMMANDS)


def action_summary(node: Node) -> str:
    """What a turn did, in a few words: its calls, its answer, or its raw text."""
    parts = []
    for c in node.calls:
        args = ", ".join(f"{k}={one_line(json.dumps(v), 24)}" for k, v in c.arguments.items())
        parts.append(f"{c.name}({args})")
    answer = parse_action(node.action).answer
    if answer is not None:
        parts.append(f"answer {one_line(answer, 30)}")
    return "; ".join(parts) or one_line(node.action, 40) or "(empty action)"


def status(session: PlaySession) -> str:
    head = session.head
    line = (f"[branch {session.current + 1}/{len(session.branches)} · "
            f"turn {session.depth(head)}/{session.max_turns} · "
            f"return {session.episode_return(head):g}")
    if session.finished(head):
        return f"{line} · episode over: {session.nodes[head].reason}]"
    return f"{line}]"


def turn_text(session: PlaySession, node: Node) -> str:
    who = "" if node.made_by == "human" else f" ({node.made_by})"
    lines = [f"turn {node.depth}{who}: {action_summary(node)}",
             to_printable(node.observation) or "(no observation)"]
    if node.reward:
        lines.append(f"reward {node.reward:+g}")
    lines.append(status(session))
    return "\n".join(lines)


def branches_text(session: PlaySession) -> str:
    lines = []
    for i, head in enumerate(session.branches):
        mark = "*" if i == session.current else " "
        if head is None:
            where, last = "start", "(no turns yet)"
        else:
            node = session.nodes[head]
            where, last = f"#{head}", action_summary(node)
        state = session.nodes[head].reason if session.finished(head) else "open"
        lines.append(f"{mark} {i + 1}. turn {session.depth(head)} at {where} · {state} · "
                     f"return {session.episode_return(head):g} · {last}")
    return "\n".join(lines)


def tree_text(session: PlaySession) -> str:
    """The whole tree, children indented under parents, branch heads marked."""
    children: dict[int | None, list[Node]] = {}
    for node in session.nodes:
        children.setdefault(node.parent, []).append(node)
    heads: dict[int | None, list[str]] = {}
    for i, head in enumerate(session.branches):
        heads.setdefault(head, []).append(f"b{i + 1}{'*' if i == session.current else ''}")

    def marks(node_id: int | None) -> str:
        return f"  <- {' '.join(heads[node_id])}" if node_id in heads else ""

    lines = [f"prompt: {one_line(session.prompt, 50)}{marks(None)}"]

    def walk(parent: int | None, indent: str) -> None:
        kids = children.get(parent, [])
        for i, node in enumerate(kids):
            last = i == len(kids) - 1
            end = ""
            if node.is_leaf:
                end = f" [{node.reason}, return {session.episode_return(node.id):g}]"
            lines.append(f"{indent}{'`-' if last else '|-'} #{node.id} {action_summary(node)}"
                         f" -> {one_line(node.observation, 36)}{end}{marks(node.id)}")
            walk(node.id, indent + ("   " if last else "|  "))

    walk(None, "")
    return "\n".join(lines)


def world_text(env: AgentEnv) -> str:
    """The files of a sandbox env, or the env's own rendering of its state."""
    if isinstance(env, SandboxEnv):
        return "files:\n" + "\n".join(_files(env, ".", "  ", depth=3))
    return to_printable(env.render_text())


def world_file_text(env: AgentEnv, path: str) -> str:
    """One file of a sandbox env's world, read through the sandbox (so a path outside its
    work dir is refused there) and cut at WORLD_FILE_CHARS."""
    if not isinstance(env, SandboxEnv):
        raise PlayError(f"{type(env).__name__} has no files: its world is the env's state, "
                        "which /world alone shows")
    try:
        data = env.box.read_file(path)
    except SandboxError as exc:
        raise PlayError(f"cannot show {path}: {exc}; /world lists the files") from None
    text = to_printable(data.decode("utf-8", errors="replace"))
    cut = ""
    if len(text) > WORLD_FILE_CHARS:
        cut = f"\n[... {len(text) - WORLD_FILE_CHARS} more characters not shown]"
    return f"{path} ({len(data)} bytes):\n{text[:WORLD_FILE_CHARS]}{cut}"


def _files(env: SandboxEnv, path: str, indent: str, depth: int) -> list[str]:
    lines = []
    for name in sorted(env.box.listdir(path)):
        sub = name if path == "." else f"{path}/{name}"
        if depth <= 1:
            lines.append(f"{indent}{name}")
            continue
        try:
            inner = _files(env, sub, indent + "  ", depth - 1)
        except SandboxError:  # not a directory
            lines.append(f"{indent}{name}")
            continue
        lines.append(f"{indent}{name}/")
        lines.extend(inner)
    return lines or [f"{indent}(empty)"]


def proposals_text(proposals: list[Proposal]) -> str:
    lines = [f"model proposals ({proposals[0].seconds:.1f}s): pick 1-{len(proposals)}, "
             "`e N` to edit one, Enter to discard"]
    for i, proposal in enumerate(proposals, start=1):
        text = one_line(proposal.gen.text, 100) or "(empty)"
        lines.append(f"  {i}. {text}  [{len(proposal.gen.ids)} tokens]")
    return "\n".join(lines)

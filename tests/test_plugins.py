"""A third-party package's envs, end to end: a real package with its own namespace and a
`treegym.envs` entry point, installed by pip into a throwaway directory, then used through
the real `treegym` CLI. A broken plugin keeps `import treegym` working but makes
`treegym envs` fail, unless `--ignore-broken` is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import TREEGYM

WORDCOUNT = '''
"""newcomer's WordCount: count the words of a sentence the `read` tool shows."""

import treegym
from treegym import AgentEnv, Task, tool

WORDS = ["tree", "fork", "leaf", "root", "branch"]


class WordCount(AgentEnv):
    """Count the words of a sentence."""

    description = "Read a sentence, then answer how many words it has."

    def make_task(self, rng, options):
        words = rng.choice(WORDS, size=int(rng.integers(2, 6))).tolist()
        return Task(id=f"wc-{'-'.join(words)}", answer=len(words),
                    setup={"text": " ".join(words)},
                    prompt="How many words does the sentence from read() have?")

    def setup(self, task):
        self.text = task.setup["text"]

    @tool
    def read(self) -> str:
        """Show the sentence."""
        return self.text

    def score(self, answer):
        return float(answer.strip() == str(self.task.answer))


def register_envs():
    treegym.register("newcomer/WordCount-v0", entry_point=WordCount, kwargs={"max_turns": 4})
'''

BROKEN = '''
def register_envs():
    raise RuntimeError("broken_plugin needs its data files; run broken-plugin-setup first")
'''


def _package(root: Path, name: str, module: str, source: str) -> Path:
    """A source tree pip can install: pyproject.toml declaring the entry point, one module."""
    root.mkdir()
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1"

        [project.entry-points."treegym.envs"]
        {name} = "{module}:register_envs"

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    (root / f"{module}.py").write_text(source)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both plugins, each installed as a real distribution (dist-info and entry points) by
    pip into a folder of their own, offline; the good one is the default `PYTHONPATH`."""
    src = tmp_path_factory.mktemp("src")
    sites = tmp_path_factory.mktemp("site")
    for name, module, source in [("newcomer", "newcomer_envs", WORDCOUNT),
                                 ("broken-plugin", "broken_plugin", BROKEN)]:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--target", str(sites / module),
             str(_package(src / module, name, module, source))],
            check=True, capture_output=True, timeout=300)
    return sites


def _run(site: Path, *args: str, broken: bool = False) -> subprocess.CompletedProcess[str]:
    """`treegym ARGS` seeing the newcomer plugin (and, if `broken`, the broken one too)."""
    paths = [site / "newcomer_envs", *([site / "broken_plugin"] if broken else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    return subprocess.run([TREEGYM, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_plugin_env_is_listed_in_its_own_namespace(site: Path) -> None:
    done = _run(site, "envs", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout.strip().splitlines()[-1])}
    assert rows["newcomer/WordCount-v0"] == {
        "id": "newcomer/WordCount-v0", "description": "Read a sentence, then answer how many "
        "words it has.", "tools": ["read"], "needs_sandbox": False, "max_turns": 4}
    assert "treegym/Maze-v0" in rows and "CartPole-v1" not in rows


def test_plugin_env_rolls_out_through_the_cli(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the tiny policy needs the torch extra")
    out = tmp_path / "trees.jsonl"
    done = _run(site, "rollout", "newcomer/WordCount-v0", "--policy", "tiny", "--tasks", "1",
                "--mode", "chain", "--n", "1", "--max-tokens", "8", "--env-opt", "max_turns=2",
                "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    [tree] = [json.loads(line) for line in out.read_text().splitlines()]
    assert tree["env_id"] == "newcomer/WordCount-v0" and tree["env_kwargs"] == {"max_turns": 2}
    assert tree["task"]["id"].startswith("wc-") and 1 <= len(tree["nodes"]) <= 2
    assert [t["function"]["name"] for t in tree["tools"]] == ["read"]


def test_broken_plugin_fails_envs_with_its_error_unless_ignored(site: Path) -> None:
    error = ("treegym plugin 'broken-plugin' (broken_plugin:register_envs) failed to load: "
             "RuntimeError: broken_plugin needs its data files; run broken-plugin-setup first; "
             "fix or uninstall 'broken-plugin'")
    done = _run(site, "envs", "--json", broken=True)
    assert done.returncode == 1 and done.stdout == ""
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("treegym: error: ")]
    assert error in line and "--ignore-broken" in line

    done = _run(site, "envs", "--json", "--ignore-broken", broken=True)
    assert done.returncode == 0, done.stderr
    assert f"treegym: warning: {error}" in done.stderr.splitlines()
    ids = [row["id"] for row in json.loads(done.stdout.strip().splitlines()[-1])]
    assert "newcomer/WordCount-v0" in ids and "treegym/Maze-v0" in ids


def test_broken_plugin_warns_at_import_and_the_rest_still_load(site: Path) -> None:
    script = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import treegym\n"
        "print(treegym.make('newcomer/WordCount-v0').config.max_turns)\n"
        "print([f.model_dump() for f in treegym.registry.plugin_failures()])\n"
        "print([str(w.message) for w in caught if 'plugin' in str(w.message)])\n"
    )
    paths = os.pathsep.join(str(site / m) for m in ("newcomer_envs", "broken_plugin"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": paths}, timeout=300, check=True)
    max_turns, failures, warned = done.stdout.splitlines()
    assert max_turns == "4"
    assert failures == str([{
        "name": "broken-plugin", "value": "broken_plugin:register_envs",
        "package": "broken-plugin", "error": "RuntimeError: broken_plugin needs its data files; "
        "run broken-plugin-setup first"}])
    assert "failed to load: RuntimeError: broken_plugin needs its data files" in warned

"""From a model's `<answer>` to the source the judge runs, leniently.

The task is the function, not its formatting, so three things are forgiven:
- a fenced block (```python ... ```) counts for its content;
- an answer with no top-level `def <entry point>(` is taken as the function's body and
  appended to the prompt, indented to fit (the parser strips an answer, so a body's first
  line may have lost its indent: both readings are tried, the first that parses wins);
- the answer runs after the prompt in the same namespace, so the prompt's imports and
  helpers (`List`, `math`, HumanEval/10's `is_palindrome`) are there without repeating them.

Parsing here never runs the answer: it runs only in the judge's sandbox.
"""

from __future__ import annotations

import ast
import re
import textwrap

from .problems import Problem

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:^[ \t]*```|\Z)",
                    re.DOTALL | re.MULTILINE)


def answer_source(answer: str, problem: Problem) -> str:
    """The answer as a module to run after the prompt: a whole function, or prompt + body."""
    fenced = _FENCE.search(answer)
    code = fenced.group(1) if fenced else answer
    name = re.escape(problem.entry_point)
    if re.search(rf"^(?:async[ \t]+)?def[ \t]+{name}[ \t]*\(", code, re.MULTILINE):
        return code
    return _with_body(problem.prompt, code)


def _with_body(prompt: str, body: str) -> str:
    lines = body.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    first_line_stripped = "\n".join([*lines[:1], *(line[cut:] for line in lines[1:])])
    readings = [first_line_stripped, textwrap.dedent(body)]
    sources = [prompt + textwrap.indent(reading, "    ") + "\n" for reading in readings]
    return next((source for source in sources if _parses(source)), sources[-1])


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return True

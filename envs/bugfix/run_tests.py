"""A dependency-free runner for pytest-style test files, copied into BugFix sandboxes.

It is the agent's tool for checking its work: sandboxes carry a bare Python, often
without pytest. Grading never runs it (see grading.py), since the agent can rewrite it.
This runs every `test_*` function in `test_*.py` files of the working directory (or the
files named on the command line) and reports `N passed, M failed`, or one JSON line with
`--json`.
"""

import importlib.util
import json
import pathlib
import sys
import traceback


def main() -> int:
    sys.path.insert(0, str(pathlib.Path.cwd()))
    passed, failed = [], []
    named = [pathlib.Path(arg) for arg in sys.argv[1:] if not arg.startswith("--")]
    for path in named or sorted(pathlib.Path.cwd().glob("test_*.py")):
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception:
            failed.append(f"{path.name}: import failed\n{traceback.format_exc(limit=1)}")
            continue
        for name in sorted(vars(module)):
            test = getattr(module, name)
            if not (name.startswith("test_") and callable(test)):
                continue
            try:
                test()
                passed.append(f"{path.name}::{name}")
            except Exception as exc:
                failed.append(f"{path.name}::{name}: {type(exc).__name__}: {exc}")
    if "--json" in sys.argv:
        print(json.dumps({"passed": passed, "failed": failed}))
    else:
        for line in failed:
            print("FAILED", line)
        print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

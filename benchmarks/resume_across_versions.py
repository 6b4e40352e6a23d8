"""A run killed under an older version of lgtm resumes under this one to the same student.

    git worktree add /tmp/old-lgtm <old commit>
    PYTHONPATH=/tmp/old-lgtm/src python benchmarks/resume_across_versions.py old /tmp/compat
    python benchmarks/resume_across_versions.py new /tmp/compat

``old`` kills lgtm, kd and takd runs at distillation step 2 (a checkpoint after every step);
``new`` resumes them with this code and compares each with an uninterrupted run of this code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
METHODS = ("lgtm", "kd", "takd")


def main() -> int:
    from lgtm import train

    mode, work = sys.argv[1], Path(sys.argv[2])
    spec = importlib.util.spec_from_file_location(
        "equality", Path(__file__).with_name("redesign_equality.py")
    )
    equality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(equality)

    def config(method: str, out: Path, **over: object) -> object:
        return equality.tiny_config(work, method, out, save_steps=1, **over)

    class Killed(Exception):
        pass

    def kill(stage: str, step: int) -> None:
        if stage == "distill" and step == 2:
            raise Killed

    if mode == "old":
        work.mkdir(parents=True, exist_ok=True)
        equality.make_data(work)
        for method in METHODS:
            try:
                train.distill(config(method, work / f"killed-{method}"), callback=kill)
            except Killed:
                print(f"{method}: killed at distill step 2")
        return 0
    worst = 0.0
    for method in METHODS:
        whole = train.distill(config(method, work / f"whole-{method}"))
        resumed = train.distill(config(method, work / f"killed-{method}", resume=True))
        a, b = whole.student.state_dict(), resumed.student.state_dict()
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        same = whole.metrics["history"] == resumed.metrics["history"]
        worst = max(worst, diff, 0.0 if same else float("inf"))
        print(f"{method}: resumed; max |student difference| {diff:.1e}, same history: {same}")
    return 0 if worst == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())

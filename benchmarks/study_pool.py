"""Several runs of a study at a time, and the merge of a results file made elsewhere.

The transfer and weighting studies run one ``lgtm distill`` at a time on this machine's CPU;
on a lent GPU their ``lgtm`` cells run ``--workers N`` at a time (``benchmarks/studies_gpu.sh``).
Their rows come back in a results file of the same form, merged into the committed one with

    python benchmarks/study_pool.py --merge FROM.json INTO.json

(rows keyed by size, cell, seed and rate; a row already in ``INTO`` is kept, never replaced).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

Ready = tuple[dict, list[str], Path]  # a run, its command, its log file


def run_pool(
    pick: Callable[[], Ready | None],
    finish: Callable[[dict, list[str], float], None],
    env: dict,
    workers: int = 1,
    max_runs: int | None = None,
) -> int:
    """Start the runs ``pick`` names (None: none is ready now) ``workers`` at a time and call
    ``finish(run, command, wall seconds)`` as each ends; a run can become ready when another
    finishes (a chosen rate). Returns the number started. Raises SystemExit, after the running
    ones have finished, if a run failed (no new run is started after a failure)."""
    active: dict[subprocess.Popen, tuple[dict, list[str], Path, float]] = {}
    started, failed = 0, []
    while True:
        while not failed and len(active) < workers and (max_runs is None or started < max_runs):
            ready = pick()
            if ready is None:
                break
            run, cmd, log = ready
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            active[proc] = (run, cmd, log, time.time())
            started += 1
            print(f"started {log.stem}", flush=True)
        if not active:
            break
        time.sleep(1)
        for proc in [p for p in active if p.poll() is not None]:
            run, cmd, log, t0 = active.pop(proc)
            if proc.returncode != 0:
                failed.append(f"run {log.stem} failed:\n{log.read_text()[-3000:]}")
                continue
            finish(run, cmd, time.time() - t0)
            print(f"done {log.stem}", flush=True)
    if failed:
        raise SystemExit("\n".join(failed))
    return started


def key(row: dict) -> tuple:
    return (row["size"], row["cell"], row["seed"], row["lr"])


def next_ready(
    pending: list[dict],
    rows: list[dict],
    rate: Callable[[dict], float | None],
    settings: Callable[[dict], dict | None],
) -> tuple[dict, dict] | None:
    """The first pending run whose rate (``rate``: its cell's chosen one, None until its grid
    has run) and settings (None while what it needs is missing) are known, taken out of
    ``pending``; runs already in ``rows`` are dropped from it."""
    done = {key(r) for r in rows}
    for run in list(pending):
        lr = run["lr"] if run["lr"] is not None else rate(run)
        if lr is None:
            continue
        ready = {**run, "lr": lr}
        if key(ready) in done:
            pending.remove(run)
            continue
        found = settings(ready)
        if found is not None:
            pending.remove(run)
            return ready, found
    return None


def merge(source: Path, into: Path) -> int:
    """Append the rows of ``source`` that ``into`` lacks; returns how many."""
    have = json.loads(into.read_text()) if into.exists() else []
    known = {key(r) for r in have}
    new = [r for r in json.loads(source.read_text()) if key(r) not in known]
    tmp = into.with_suffix(".tmp")
    tmp.write_text(json.dumps(have + new, indent=1) + "\n")
    tmp.replace(into)
    return len(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--merge", nargs=2, metavar=("FROM", "INTO"), type=Path, required=True)
    args = p.parse_args()
    print(f"{merge(*args.merge)} rows added to {args.merge[1]}")


if __name__ == "__main__":
    main()

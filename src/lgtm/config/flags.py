"""The command-line form of a configuration: one flag per field, made by Hugging Face's
``HfArgumentParser`` from the fields (one argument group per kind of field), read back as the
fields given (the YAML file and the defaults fill the rest)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from lgtm.config.fields import FIELDS
from lgtm.errors import LgtmInputError

GROUPS = ("data", "models", "method", "training", "run")


def flag(name: str) -> str:
    """``max_length`` -> ``--max-length``."""
    return "--" + name.replace("_", "-")


def _flags_view(group: str) -> type:
    """The fields of ``group`` as ``HfArgumentParser`` reads them: every value a text (our
    converters check it, with our messages), on/off fields as flags, help with the default,
    no default of argparse's own."""
    fields = []
    for name, f in FIELDS.items():
        meta = f.metadata
        if meta["group"] != group:
            continue
        help_text = meta["help"]
        if meta["flag"]:
            metadata = {"help": help_text, "metavar": "true|false"}  # alone: true
            flag_field = dataclasses.field(default=argparse.SUPPRESS, metadata=metadata)
            fields.append((name, bool, flag_field))
            continue
        if f.default is not None:
            help_text += f" (default: {f.default})"
        choices = getattr(meta["parse"], "choices", None)
        metavar = meta["metavar"] or ("{" + ",".join(choices) + "}" if choices else None)
        metadata = {"help": help_text, **({"metavar": metavar} if metavar else {})}
        fields.append((name, str, dataclasses.field(default=argparse.SUPPRESS, metadata=metadata)))
    return dataclasses.make_dataclass(group, fields, namespace={"_argument_group_name": group})


def flags_parser() -> argparse.ArgumentParser:
    """A parser holding one flag per field and no defaults, to be used as a parent parser
    (``add_parser(..., parents=[flags_parser()])``): the namespace it gives holds only what
    was typed."""
    from transformers import HfArgumentParser

    # Every default is argparse.SUPPRESS: a flag not typed leaves no attribute.
    return HfArgumentParser([_flags_view(g) for g in GROUPS], add_help=False)


def explicit_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line, parsed (a bad value names its flag)."""
    out = {}
    for name, value in vars(namespace).items():
        if name in FIELDS:
            try:
                out[name] = FIELDS[name].metadata["parse"](value)
            except (ValueError, TypeError) as err:
                raise LgtmInputError(f"argument {flag(name)}: {err}") from None
    return out

"""Converters of configuration values: a text from the command line, or a YAML value, to the
field's type. Each raises ``ValueError`` with a phrase that ends the one-line error
(``argument --lr: expected a finite number, got 'nan'``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from typing import Any


def integer(value: Any) -> int:
    """An int (an integral float or a text of digits too; never a boolean)."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    raise ValueError(f"expected an integer, got {value!r}")


def positive_integer(value: Any) -> int:
    """An int of at least 1."""
    n = integer(value)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    return n


def float_or_auto(value: Any) -> float | str:
    """A finite float, or ``"auto"`` (chosen by a small study before the run)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return finite_float(value)


def finite_float(value: Any) -> float:
    """A finite float (a number or a text of one; never a boolean)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())
    else:
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def text(value: Any) -> str:
    """A string (numbers become their text; never a boolean)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def file_name(value: Any) -> str:
    """A file or folder name: text that is not empty (``""`` would name the current folder)."""
    name = text(value)
    if not name.strip():
        raise ValueError(f"expected a file name, got {name!r}")
    return name


def boolean(value: Any) -> bool:
    """True/False, or the texts true/yes/1/on and false/no/0/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def text_list(value: Any) -> list[str]:
    """Names from a comma-separated text or a YAML list, none empty."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [text(v).strip() for v in value]
    else:
        raise ValueError(f"expected a comma-separated list, got {value!r}")
    if not items or any(not v for v in items):
        raise ValueError(f"expected a comma-separated list of names, got {value!r}")
    return items


def choice_list(*choices: str) -> Callable[[Any], list[str]]:
    """A converter of a comma-separated text (or a YAML list) of names from ``choices``,
    each at most once."""

    def parse(value: Any) -> list[str]:
        items = text_list(value)
        bad = [v for v in items if v not in choices]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(choices)}")
        if len(set(items)) != len(items):
            raise ValueError(f"a name is given twice in {value!r}")
        return items

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def export_formats(value: Any) -> list[str]:
    """``--export``: a comma-separated list (or a YAML list) of ``onnx``, ``int8``, ``prune``;
    ``int8`` and ``prune`` are made from the ``onnx`` file, so they need it."""
    items = choice_list("onnx", "int8", "prune")(value)
    if "onnx" not in items:
        raise ValueError(
            f"{' and '.join(items)} need{'s' if len(items) == 1 else ''} onnx (the float32 "
            f"file {'it is' if len(items) == 1 else 'they are'} made from): give "
            f"onnx,{','.join(items)}"
        )
    return items


export_formats.choices = ("onnx", "int8", "prune")  # type: ignore[attr-defined]


def trackers(value: Any) -> list[str] | None:
    """``--report-to``: ``none`` (or nothing: None, an empty YAML list) -> None, else a
    comma-separated list (or a YAML list) of ``tensorboard``, ``mlflow``, ``wandb``; an empty
    text is refused, as ``--export``'s (ValueError)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, list | tuple) and not value:
        return None
    return choice_list("tensorboard", "mlflow", "wandb")(value)


trackers.choices = ("none", "tensorboard", "mlflow", "wandb")  # type: ignore[attr-defined]


def parse_layers(value: Any) -> int | list[int]:
    """``2`` -> 2 (the first two layers); ``"0,2,4"`` or ``[0, 2, 4]`` -> those teacher layers."""
    if isinstance(value, list | tuple):
        return [integer(v) for v in value]
    if isinstance(value, str) and "," in value:
        return [integer(v) for v in value.split(",") if v.strip()]
    return integer(value)


def choice(*choices: str) -> Callable[[Any], str]:
    """A converter that accepts one of ``choices`` (listed on it as ``.choices``)."""

    def parse(value: Any) -> str:
        given = text(value)
        if given not in choices:
            raise ValueError(f"{given!r} is not one of {', '.join(choices)}")
        return given

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse``, or None for None and the texts ``none`` / ``null``."""

    def parse_or_none(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
            return None
        return parse(value)

    parse_or_none.choices = getattr(parse, "choices", None)  # type: ignore[attr-defined]
    return parse_or_none


def option_metadata(
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: str,
    metavar: str | None = None,
    flag: bool = False,
) -> dict[str, Any]:
    """A field's metadata: its converter, help, flag group, metavar, on/off flag."""
    return {"parse": parse, "help": help, "group": group, "metavar": metavar, "flag": flag}


def config_field(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: str,
    metavar: str | None = None,
    flag: bool = False,
) -> Any:
    """A ``RunConfig`` field with a default and :func:`option_metadata`."""
    return field(
        default=default,
        metadata=option_metadata(parse, help, group=group, metavar=metavar, flag=flag),
    )


def of_option(option: Any) -> Callable[[Any], Any]:
    """The converter of a method's :class:`~lgtm.methods.options.Option`."""
    if option.parse is not None:
        parse = option.parse
    elif option.choices is not None:
        parse = choice(*option.choices)
    elif option.kind is int:
        parse = positive_integer if option.low == 1 else integer
    elif option.kind is float:
        parse = finite_float
    elif option.kind is bool:
        parse = boolean
    else:
        parse = text
    return optional(parse) if option.optional else parse

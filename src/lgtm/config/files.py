"""The YAML form of a configuration: read with ``file:line`` errors, written to re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lgtm.config.fields import FIELDS, RunConfig
from lgtm.config.resolve import parse_value
from lgtm.errors import LgtmInputError
from lgtm.fileio import atomic_write


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file, checked: unknown keys and bad values name their line."""
    path = Path(path)
    if not path.is_file():
        raise LgtmInputError("config file not found", file=path)
    text = path.read_text(encoding="utf-8-sig")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise LgtmInputError(
            f"not valid YAML: {problem}", file=path, line=None if mark is None else mark.line + 1
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise LgtmInputError("expected a mapping of option: value", file=path, line=1)
    _refuse_repeated_keys(node, path)
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    out: dict[str, Any] = {}
    first: dict[str, str] = {}  # option -> the key that gave it
    for raw_key, value in data.items():
        line = lines.get(str(raw_key))
        key = str(raw_key).strip().replace("-", "_")
        if key not in FIELDS:
            raise LgtmInputError(
                "unknown configuration key", file=path, line=line, field=str(raw_key)
            )
        if key in out:  # max-length and max_length: one option
            raise LgtmInputError(
                f"the same option as {first[key]!r} (line {lines.get(first[key])}); keep one",
                file=path,
                line=line,
                field=str(raw_key),
            )
        first[key] = str(raw_key)
        out[key] = parse_value(key, value, file=str(path), line=line)
    return out


def locate(err: LgtmInputError, path: str | Path | None, flags: dict[str, Any]) -> LgtmInputError:
    """``err`` (raised on the settings as a whole, e.g. an option the method cannot honour) with
    the config file's ``file:line`` of its field when that field came from the file at ``path``
    (not from a flag in ``flags``); else ``err`` itself."""
    if path is None or err.file is not None or err.field is None or err.field in flags:
        return err
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError):
        return err
    if not isinstance(node, yaml.MappingNode):
        return err
    for key, _ in node.value:
        if str(key.value).strip().replace("-", "_") == err.field:
            return LgtmInputError(
                err.message, file=path, line=key.start_mark.line + 1, field=err.field
            )
    return err


def _refuse_repeated_keys(node: yaml.Node, path: Path) -> None:
    """A key given twice in one mapping, at any depth, names the line of its repeat (PyYAML
    would keep the last value without a word)."""
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else repr(key.value)
            line = key.start_mark.line + 1
            if name in first:
                raise LgtmInputError(
                    f"given twice (first on line {first[name]}); keep one",
                    file=path,
                    line=line,
                    field=str(name),
                )
            first[name] = line
            _refuse_repeated_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(item, path)


def save_yaml(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration so that ``lgtm distill --config PATH`` re-runs it."""
    path = Path(path)
    body = yaml.safe_dump(config.to_dict(saved=True), sort_keys=False, default_flow_style=False)
    atomic_write(path, "# lgtm distill --config this-file  (re-runs this configuration)\n" + body)

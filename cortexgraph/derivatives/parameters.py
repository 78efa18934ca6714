"""One parameter idiom for every stage: a frozen dataclass, readable from a TOML file, printable as one.

A stage's parameters are one frozen dataclass (e.g.
:class:`cortexgraph.build_graph.BuildGraphParameters`) that checks its ranges in ``__post_init__``
and raises :class:`cortexgraph.errors.ParameterError`. This module adds what every stage shares
(docs/conventions.md, "Parameters"):

- :func:`read_parameters`: a TOML file (flat ``key = value`` lines, keys = the dataclass's fields)
  -> the dataclass. Unknown keys, values of the wrong type and values out of range are refused with
  a :class:`~cortexgraph.errors.ParameterError` naming the file, the key and the fix (exit status 2
  on the command line).
- :func:`resolve_parameters`: the same, with values given explicitly (command-line options) winning
  over the file's. The resolved dataclass is what the stage records (``parameters`` of its stage
  record, docs/derivatives.md): the same values reuse the outputs, a changed one recomputes them.
- :func:`parameters_template`: every field with its default, its type and its unit (from the name:
  ``_mm`` millimetres, ``_um`` micrometres, ``_s`` seconds, ...) as a commented TOML file;
  :func:`read_parameters` of the template gives the defaults back.
- :func:`check_fields`: the ``__post_init__`` range checks as a table of field names and
  :class:`Rule` s (:func:`one_of`, :func:`integers`, :func:`numbers`, :func:`texts`, :data:`SEED`),
  each error made by :func:`field_errors`; :func:`check_preset_number` for a preset's overrides.

TOML has no null: an optional field (``float | None``) is unset with the string ``"none"``.

Stages whose defaults come from a named preset (``lsm``: :class:`~cortexgraph.lsm.networks.LSMConfig`;
``synth``: :class:`~cortexgraph.synth.presets.Preset`) declare their own fields (the preset's name
among them) and add every field of the preset's dataclass as an override with
:func:`with_overrides`: typed ``T | None``, default ``None`` (``"none"``: the preset's value);
:func:`overrides_of` gives the overrides that were set. Where the preset's own value may be
``None`` (``slab_posterior_mm``: the whole brain; ``output_patch_um``: the full valid output;
``ce_epochs``: the SCL + linear budget), ``"none"`` still keeps the preset's value and the TOML
boolean ``false`` (:data:`NO_VALUE` in Python) gives the field no value: ``slab_posterior_mm =
false`` sections the whole brain at any preset's resolution.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import json
import math
import os
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cortexgraph.errors import CortexgraphError, ParameterError

P = TypeVar("P")

#: the string that stands for ``None`` in a parameters file (TOML has no null)
NONE = "none"


class NoValue(enum.Enum):
    """The type of :data:`NO_VALUE`."""

    NO_VALUE = "false"

    def __repr__(self) -> str:
        return "NO_VALUE"


#: the value of an override (:func:`with_overrides`) that gives a field whose preset value may be
#: ``None`` no value (``None``), where ``None`` itself keeps the preset's; ``false`` in a file
NO_VALUE = NoValue.NO_VALUE

#: units read from the end of a field's name (docs/conventions.md, "Units"); the longest suffix wins
_UNITS = (
    ("_mm3", "cubic millimetres"),
    ("_mm2", "square millimetres"),
    ("_mm", "millimetres"),
    ("_um", "micrometres"),
    ("_px", "pixels"),
    ("_deg", "degrees"),
    ("_s", "seconds"),
    ("_gb", "gigabytes"),
    ("_fraction", "fraction, 0..1"),
    ("_share", "fraction, 0..1"),
    ("_ratio", "ratio"),
)


def invalid_parameter(
    stage: str, name: str, value: Any, rule: str, option: str = ""
) -> ParameterError:
    """The error of a stage's parameter dataclass for a value that breaks ``rule``:
    ``"<stage> parameter <name> = <value>: must be <rule>"``, fix ``"give <name><option> <rule>"``
    (``option``: e.g. ``" (option --tile-px)"`` where the value came from a command-line option)."""
    return ParameterError(
        f"{stage} parameter {name} = {value!r}: must be {rule}", fix=f"give {name}{option} {rule}"
    )


def field_errors(
    params: object, stage: str, option: Callable[[str], str] = lambda name: ""
) -> Callable[[str, str], ParameterError]:
    """``bad(name, rule)``: the :func:`invalid_parameter` error of field ``name`` of the dataclass
    ``params`` (with its value), for its ``__post_init__``; ``option(name)``: the text that names the
    field's command-line option, e.g. ``" (option --tile-px)"`` (default none)."""

    def bad(name: str, rule: str) -> ParameterError:
        return invalid_parameter(stage, name, getattr(params, name), rule, option(name))

    return bad


def is_integer(value: object) -> bool:
    """An int that is not a bool (TOML and Python both give ``True`` an int type)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """An int or float that is not a bool, nan or infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the value of a parameter field must be, for a ``__post_init__``: ``test(value)`` is
    true; ``words`` says it in the error (``"a finite number > 0"``: the rule of
    :func:`invalid_parameter`). Made by :func:`one_of`, :func:`texts`, :func:`integers` and
    :func:`numbers`."""

    test: Callable[[Any], bool]
    words: str

    def check(self, params: object, bad: Callable[[str, str], ParameterError], *names: str) -> None:
        """Raise ``bad(name, words)`` (:func:`field_errors`) for the first of the fields ``names``
        of ``params`` whose value breaks the rule."""
        for name in names:
            if not self.test(getattr(params, name)):
                raise bad(name, self.words)

    def or_none(self, words: str | None = None) -> Rule:
        """The rule, or ``None`` (``"none"`` in a file), said as ``words`` (default the rule's)."""
        return Rule(lambda value: value is None or self.test(value), words or self.words)


def one_of(choices: Iterable[Any], words: str | None = None) -> Rule:
    """A value among ``choices``; words ``"one of a, b, c"`` unless given."""
    allowed = tuple(choices)
    return Rule(lambda value: value in allowed, words or f"one of {', '.join(map(str, allowed))}")


def texts(words: str) -> Rule:
    """A non-empty str (a name, a brain id, ...), said as ``words``."""
    return Rule(lambda value: isinstance(value, str) and bool(value), words)


def integers(low: int, high: float = math.inf, words: str | None = None) -> Rule:
    """An integer (not a bool) in ``low..high``; words ``"an integer >= low"`` (no ``high``) or
    ``"an integer in low..high"`` unless given."""
    said = f"an integer >= {low}" if high == math.inf else f"an integer in {low}..{high}"
    return Rule(lambda value: is_integer(value) and low <= value <= high, words or said)


def numbers(
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    words: str | None = None,
) -> Rule:
    """A finite number (not a bool) between ``low`` and ``high``, each end excluded where ``*_open``;
    words ``"a finite number > low"`` (``>=`` when closed; no ``high``) or ``"a number in [low,
    high)"`` (brackets by the ends) unless given."""

    def test(value: Any) -> bool:
        if not is_finite_number(value):
            return False
        above = low < value if low_open else low <= value
        return above and (value < high if high_open else value <= high)

    if high == math.inf:
        said = f"a finite number {'>' if low_open else '>='} {low}"
    else:
        said = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return Rule(test, words or said)


#: rules of a parameters dataclass for :func:`check_fields`: (a field's name or several names, rule)
FieldRules = Iterable[tuple[str | Iterable[str], Rule]]


def check_fields(
    params: object, bad: Callable[[str, str], ParameterError], rules: FieldRules
) -> None:
    """The ``__post_init__`` check of a parameters dataclass by a table: raises ``bad(name, words)``
    (:func:`field_errors`) for the first field, in the order of ``rules``, whose value breaks its
    rule."""
    for names, rule in rules:
        rule.check(params, bad, *((names,) if isinstance(names, str) else names))


#: a seed of numpy and torch random streams
SEED = integers(0, 2**32 - 1)


def check_preset_number(
    name: str,
    value: object,
    bad: Callable[[str, str], ParameterError],
    zero_allowed: Collection[str] = (),
    below_one: Collection[str] = ("momentum",),
) -> None:
    """The range of an override of a preset's number (:func:`with_overrides`): an integer >= 1 or a
    finite number > 0, ``>= 0`` for the fields ``zero_allowed`` names; a number in ``[0, 1)`` for
    those ``below_one`` names. Raises ``bad(name, rule)`` (:func:`field_errors`) when ``value``
    breaks it (a value that is no number breaks it)."""
    zero = name in zero_allowed
    if is_integer(value):
        rule = integers(0 if zero else 1)
    elif not is_finite_number(value):
        raise bad(name, "a finite number")
    elif name in below_one:
        rule = numbers(0, 1, high_open=True)
    else:
        rule = numbers(0, low_open=not zero)
    if not rule.test(value):
        raise bad(name, rule.words)


def field_unit(name: str) -> str | None:
    """The unit a field's name declares (``voxel_size_mm`` -> ``millimetres``), or None."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return None


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """``name -> (field, resolved type)`` of the init fields of dataclass ``cls``."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _type_words(kind: Any) -> str:
    """A field's type in words (``a number``, ``an integer``, ``true or false``, ...)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        words = " or ".join(_type_words(a) for a in rest)
        if NoValue in rest:
            words = words.replace(" or false (no value)", ", false (no value)")
        return f'{words} or "{NONE}"' if len(rest) < len(args) else words
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (tuple, list) or kind in (tuple, list):
        item = _type_words(args[0] if args else Any).removeprefix("a ").removeprefix("an ")
        plural = {"text (in quotes)": "texts (in quotes)", "path (in quotes)": "paths (in quotes)"}
        return f"a list of {plural.get(item, item + 's')}"
    return {
        NoValue: "false (no value)",
        dict: "a table ({key = value, ...})",
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a text (in quotes)",
        Path: "a path (in quotes)",
    }.get(kind, "a value")


class _Mismatch(Exception):
    """A value that does not fit a field's type (turned into a ParameterError by the caller)."""


def _coerce(value: Any, kind: Any) -> Any:
    """``value`` as read by :mod:`tomllib`, converted to type ``kind``; raises :class:`_Mismatch`."""
    if kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        if optional and isinstance(value, str) and value.lower() == NONE:
            return None
        if NoValue in args and value is False:
            return NO_VALUE
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin in (tuple, list) or kind in (tuple, list):
        if not isinstance(value, list):
            raise _Mismatch
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise _Mismatch
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else Any
        items = [_coerce(v, item) for v in value]
        return tuple(items) if (origin is tuple or kind is tuple) else items
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if kind is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if kind is Path:
        if isinstance(value, str):
            return Path(value)
        raise _Mismatch
    if kind is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    if kind is NoValue:
        raise _Mismatch  # only ``false``, taken above
    return value


def _toml_value(value: Any) -> str:
    """One value in TOML syntax (None -> ``"none"``)."""
    if value is None:
        return json.dumps(NONE)
    if value is NO_VALUE:
        return "false"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".eE") else text + ".0"
    if isinstance(value, str | os.PathLike):
        return json.dumps(os.fspath(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: Any) -> str:
    """A key of an inline table (bare where TOML allows it)."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text, ensure_ascii=False)


def _read_toml(path: Path, stage: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise ParameterError(
            f"{stage} parameters file not found",
            file=path,
            fix=f"give an existing file to --params (print one with `cortexgraph {stage} --params-template`)",
        ) from None
    except UnicodeDecodeError as exc:
        raise ParameterError(
            f"not UTF-8 text (byte {exc.start}): a parameters file is TOML, which is UTF-8",
            file=path,
            fix="save the file as UTF-8 text",
        ) from None
    except IsADirectoryError:
        raise ParameterError(
            f"{stage} parameters file is a folder",
            file=path,
            fix=f"give a file to --params (print one with `cortexgraph {stage} --params-template`)",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(
            f"not a TOML file: {exc}",
            file=path,
            fix="write one `key = value` line per parameter (texts in quotes)",
        ) from None


def _values_from(
    data: Mapping[str, Any], cls: type, path: Path | str, stage: str
) -> dict[str, Any]:
    """The file's keys checked against ``cls``'s fields and converted to their types."""
    fields = _fields(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ParameterError(
                f"unknown {stage} parameter {key!r}",
                file=path,
                fix=f"{hint}remove it or use one of: {', '.join(fields)}",
            )
        kind = fields[key][1]
        try:
            values[key] = _coerce(raw, kind)
        except _Mismatch:
            raise ParameterError(
                f"{stage} parameter {key} = {_shown(raw)} is not {_type_words(kind)}",
                file=path,
                fix=f"give {key} {_type_words(kind)} (default: {_toml_value(_default(fields[key][0]))})",
            ) from None
    return values


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # a [table] of the file
        return "a table"
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def read_parameters(cls: type[P], path: str | os.PathLike[str], *, stage: str) -> P:
    """The parameters of ``stage`` in TOML file ``path``: flat ``key = value`` lines, each key a field of
    the frozen dataclass ``cls``; a key left out keeps its default; ``"none"`` unsets an optional
    field. Raises :class:`~cortexgraph.errors.ParameterError` (naming ``path``, the key and the fix)
    for an unreadable file, an unknown key, a value of the wrong type or one out of range."""
    return resolve_parameters(cls, path, {}, stage=stage)


def resolve_parameters(
    cls: type[P],
    path: str | os.PathLike[str] | None,
    overrides: Mapping[str, Any],
    *,
    stage: str,
) -> P:
    """``cls`` from the defaults, then the file ``path`` (when given, :func:`read_parameters`), then
    ``overrides`` (field -> value; the options a user gave on the command line win over the file).

    Errors name the file when its values are at fault, else "command-line options"."""
    file_values: dict[str, Any] = {}
    where: Path | None = None
    if path is not None:
        where = Path(path)
        file_values = _values_from(_read_toml(where, stage), cls, where, stage)
    fields = _fields(cls)
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    try:
        return cls(**{**file_values, **overrides})
    except CortexgraphError as exc:
        from_file = {k: v for k, v in file_values.items() if k not in overrides}
        blame_file = where is not None and not _valid(cls, from_file)
        raise ParameterError(
            exc.message if blame_file else f"{exc.message} (command-line options)",
            file=where if blame_file else None,
            fix=exc.fix,
        ) from None
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"{stage} parameters: {exc}",
            file=where,
            fix=f"compare with `cortexgraph {stage} --params-template`",
        ) from None


def _valid(cls: type, values: Mapping[str, Any]) -> bool:
    try:
        cls(**values)
    except (CortexgraphError, TypeError, ValueError):
        return False
    return True


def _field_help(cls: type, none: str = f'"{NONE}"') -> dict[str, str]:
    """``name -> description`` from each field's ``metadata["help"]``, else from entries
    ``name[, name...] : text`` of the class docstring (continuation lines indented); ``None`` of the
    docstring is written ``none`` (how a file spells it)."""
    helps: dict[str, str] = {}
    doc = inspect.cleandoc(cls.__doc__ or "")
    entry = re.compile(r"^([a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*)\s+:\s+(.*)$")
    names: list[str] = []
    for line in doc.splitlines():
        match = entry.match(line)
        if match:
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                helps[name] = match.group(2).strip()
        elif names and line.startswith((" ", "\t")) and line.strip():
            for name in names:
                helps[name] += " " + line.strip()
        else:
            names = []
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            helps[f.name] = str(f.metadata["help"])
    return {k: _plain(v, none) for k, v in helps.items()}


def _plain(text: str, none: str = f'"{NONE}"') -> str:
    """reStructuredText markup of a docstring as plain text (``None`` -> ``none``: "none", as in
    the file)."""
    text = text.replace("``None``", none)
    # :func:`~a.b.c` -> c, :func:`a.b.c` -> a.b.c
    text = re.sub(r":\w+:`~[^`]*?([^.`\s]+)`", r"\1", text)
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)


def parameters_template(cls: type, *, stage: str) -> str:
    """Every field of ``cls`` as a TOML file: a comment (description, type, unit) and
    ``key = default`` per field. :func:`read_parameters` of it gives the defaults."""
    helps = _field_help(cls)
    lines = [
        f"# Parameters of `cortexgraph {stage}` ({cls.__module__}.{cls.__name__}).",
        f"# Use: cortexgraph {stage} ... --params FILE.toml; options given on the command line win.",
        "# Every key may be left out (it keeps the default written here); the stage records the",
        '# resolved values. TOML has no null: "none" unsets an optional value.',
    ]
    overrides = [f for f in dataclasses.fields(cls) if OVERRIDE in f.metadata]
    if overrides:
        lines.append(
            f'# A field of the preset ({overrides[0].metadata[OVERRIDE]}) set to "none" keeps the '
            "preset's value."
        )
    nullable = [f.name for f in overrides if f.metadata.get(NULLABLE)]
    if nullable:
        lines.append(
            f"# false gives {', '.join(nullable)} no value (e.g. {nullable[0]} = false); "
            "each says what that means."
        )
    for name, (field, kind) in _fields(cls).items():
        default = _default(field)
        lines.append("")
        about = helps.get(name, "")
        unit = field_unit(name)
        kind_words = _type_words(kind) + (f", {unit}" if unit else "")
        text = f"{about} [{kind_words}]" if about else f"[{kind_words}]"
        lines += textwrap.wrap(text, 98, initial_indent="# ", subsequent_indent="# ")
        if default is dataclasses.MISSING:
            lines.append(f"# {name} =   (required: no default)")
        else:
            lines.append(f"{name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def parameters_as_toml(params: Any) -> str:
    """The values of a parameters dataclass as ``key = value`` lines (a file :func:`read_parameters`
    reads back to an equal object)."""
    return "".join(
        f"{f.name} = {_toml_value(getattr(params, f.name))}\n" for f in dataclasses.fields(params)
    )


#: metadata key of the fields :func:`with_overrides` adds
OVERRIDE = "override_of"
#: metadata key of the overrides whose preset value may be None (``false`` / :data:`NO_VALUE`)
NULLABLE = "nullable"


def with_overrides(
    base: type,
    *,
    exclude: Iterable[str] = (),
    keeps: str = "the preset's value",
    presets: Mapping[str, Any] | None = None,
) -> Callable[[type[P]], type[P]]:
    """Class decorator: the frozen dataclass ``cls`` (the stage's own parameters, each with a
    default) extended by every init field of dataclass ``base`` that ``cls`` does not declare and
    ``exclude`` does not name, as an override: typed ``T | None``, default ``None`` (``"none"`` in
    a file: ``keeps``), described as in ``base``'s docstring (with each preset's value where
    ``presets``, name -> instance of ``base``, is given). A field that ``base`` types ``T | None``
    also takes :data:`NO_VALUE` (``false`` in a file): ``None`` for the preset's field. The result
    is a subclass of ``cls`` with its name, module and docstring (so it pickles, and
    ``cls.__post_init__`` checks it); :func:`overrides_of` gives the values set.

    Inputs: ``base`` (a dataclass whose defaults a preset chooses), the names to leave out.
    Output: the decorator."""
    skip = set(exclude)

    def decorate(cls: type[P]) -> type[P]:
        own = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        helps, helps_nullable = _field_help(base), _field_help(base, "false")
        extra = []
        for name, (_field, kind) in _fields(base).items():
            if name in own or name in skip:
                continue
            nullable = type(None) in typing.get_args(kind)
            if nullable and bool in typing.get_args(kind):
                raise TypeError(f"{base.__name__}.{name}: false would mean both no value and false")
            optional = kind | NoValue if nullable else kind | None
            about = (helps_nullable if nullable else helps).get(name, "")
            keep = keeps
            if presets:
                shown = {
                    key: _toml_value(_no_value_if_none(getattr(preset, name)))
                    for key, preset in presets.items()
                }
                if len(presets) > 1 and len(set(shown.values())) == 1:
                    keep += f": {next(iter(shown.values()))} in every preset"
                else:
                    keep += ": " + ", ".join(f"{key} {value}" for key, value in shown.items())
            text = f'{about} ("{NONE}": {keep})' if about else f'"{NONE}": {keep}'
            meta = {"help": text, OVERRIDE: base.__name__, NULLABLE: nullable}
            extra.append((name, optional, dataclasses.field(default=None, metadata=meta)))
        made = dataclasses.make_dataclass(
            cls.__name__, extra, bases=(cls,), frozen=True, namespace={"__doc__": cls.__doc__}
        )
        made.__module__ = cls.__module__
        made.__qualname__ = cls.__qualname__
        return made

    return decorate


def _no_value_if_none(value: Any) -> Any:
    return NO_VALUE if value is None else value


def overrides_of(params: Any) -> dict[str, Any]:
    """The override fields (:func:`with_overrides`) of ``params`` that are set (not None), with
    :data:`NO_VALUE` as ``None`` (the preset's field gets no value). Raises
    :class:`~cortexgraph.errors.ParameterError` for :data:`NO_VALUE` in a field whose preset value
    cannot be None."""
    values = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if OVERRIDE not in f.metadata or value is None:
            continue
        if value is NO_VALUE:
            if not f.metadata.get(NULLABLE):
                raise ParameterError(
                    f"{f.name} = false: {f.name} must have a value",
                    fix=f'give {f.name} a value, or "{NONE}" (the preset\'s)',
                )
            value = None
        values[f.name] = value
    return values

"""cortexgraph.derivatives.parameters: a TOML file -> a stage's frozen parameters dataclass; templates."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from cortexgraph.build_graph.parameters import BuildGraphParameters
from cortexgraph.derivatives.parameters import (
    field_unit,
    parameters_as_toml,
    parameters_template,
    read_parameters,
    resolve_parameters,
)
from cortexgraph.errors import ParameterError


@dataclass(frozen=True)
class Toy:
    """Parameters of a toy stage.

    spacing_um : pixel spacing.
    steps, rate : how far and how fast
        (continued on a second line).
    """

    spacing_um: float = 2.0
    steps: int = 3
    rate: float | None = None
    mode: Literal["fast", "slow"] = "fast"
    sections: tuple[int, ...] = (1, 2)
    out: Path = Path("out")
    flag: bool = True
    note: str = dataclasses.field(default="x", metadata={"help": "a free note"})

    def __post_init__(self) -> None:
        if self.spacing_um <= 0:
            raise ParameterError(
                f"toy parameter spacing_um = {self.spacing_um}: must be > 0",
                fix="give spacing_um > 0",
            )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("cls", [Toy, BuildGraphParameters])
def test_template_reads_back_as_the_defaults(cls, tmp_path):
    text = parameters_template(cls, stage="toy")
    assert read_parameters(cls, _write(tmp_path, text), stage="toy") == cls()
    # every field is written as a key (none commented out), each after its comment
    assert set(tomllib.loads(text)) == {f.name for f in dataclasses.fields(cls)}


def test_template_comments_carry_help_type_and_unit():
    text = parameters_template(Toy, stage="toy")
    assert "# pixel spacing. [a number, micrometres]\nspacing_um = 2.0" in text
    assert "# how far and how fast (continued on a second line). [an integer]\nsteps = 3" in text
    assert 'rate = "none"' in text and 'mode = "fast"' in text and "sections = [1, 2]" in text
    assert "# a free note [a text (in quotes)]" in text
    template = parameters_template(BuildGraphParameters, stage="build-graph")
    assert 'voxel_size_mm = "none"' in template
    assert "[a number, cubic millimetres]" in template.replace("\n# ", " ")
    assert "``" not in template and ":func:" not in template


def test_field_units_from_names():
    assert field_unit("voxel_size_mm") == "millimetres"
    assert field_unit("min_defect_mm3") == "cubic millimetres"
    assert field_unit("spacing_um") == "micrometres"
    assert field_unit("min_tissue_fraction") == "fraction, 0..1"
    assert field_unit("steps") is None


def test_values_are_converted_to_the_field_types(tmp_path):
    path = _write(
        tmp_path,
        'spacing_um = 4\nrate = 0.5\nmode = "slow"\nsections = [3, 4, 5]\nout = "x/y"\nflag = false\n',
    )
    toy = read_parameters(Toy, path, stage="toy")
    assert toy == Toy(4.0, 3, 0.5, "slow", (3, 4, 5), Path("x/y"), False)
    assert isinstance(toy.spacing_um, float)
    assert read_parameters(Toy, _write(tmp_path, 'rate = "none"\n'), stage="toy").rate is None
    # the values written back read back equal
    again = read_parameters(Toy, _write(tmp_path, parameters_as_toml(toy)), stage="toy")
    assert again == toy


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("spacing = 2.0\n", ["unknown toy parameter 'spacing'", "did you mean spacing_um?"]),
        ('steps = "3"\n', ['steps = "3" is not an integer', "give steps an integer (default: 3)"]),
        ("steps = 2.5\n", ["steps = 2.5 is not an integer"]),
        ("flag = 1\n", ["flag = 1 is not true or false"]),
        ('mode = "medium"\n', ['mode = "medium" is not one of "fast", "slow"']),
        ('sections = [1, "a"]\n', ['sections = [1, "a"] is not a list of integers']),
        ("spacing_um = -1\n", ["spacing_um = -1.0: must be > 0", "Fix: give spacing_um > 0"]),
        ("spacing_um = \n", ["not a TOML file", "Fix: write one `key = value` line"]),
        ("[spacing_um]\n", ["spacing_um = a table is not a number"]),
    ],
)
def test_bad_files_name_the_file_the_key_and_the_fix(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ParameterError) as caught:
        read_parameters(Toy, path, stage="toy")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and caught.value.exit_code == 2
    for word in words:
        assert word in message


def test_missing_file_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="parameters file not found"):
        read_parameters(Toy, tmp_path / "absent.toml", stage="toy")


def test_a_file_that_is_not_utf8_or_a_folder_is_a_parameter_error(tmp_path):
    """Both used to end as "internal error" (UnicodeDecodeError, IsADirectoryError)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"\xff\xfe mode = 'caf\xe9'\n")
    with pytest.raises(ParameterError) as caught:
        read_parameters(Toy, path, stage="toy")
    assert str(caught.value).startswith(f"{path}: not UTF-8 text (byte 0)")
    assert "Fix: save the file as UTF-8 text" in str(caught.value)
    with pytest.raises(ParameterError, match="parameters file is a folder"):
        read_parameters(Toy, tmp_path, stage="toy")


def test_overrides_win_over_the_file_and_errors_name_their_origin(tmp_path):
    path = _write(tmp_path, "spacing_um = 3.0\nsteps = 7\n")
    assert resolve_parameters(Toy, path, {"steps": 9}, stage="toy") == Toy(3.0, 9)
    assert resolve_parameters(Toy, None, {"steps": 9}, stage="toy") == Toy(steps=9)
    # an override that fixes the file's bad value
    bad = _write(tmp_path, "spacing_um = -3.0\n")
    assert resolve_parameters(Toy, bad, {"spacing_um": 1.0}, stage="toy").spacing_um == 1.0
    with pytest.raises(ParameterError) as caught:  # the option is at fault, not the file
        resolve_parameters(Toy, path, {"spacing_um": 0.0}, stage="toy")
    assert caught.value.file is None and "(command-line options)" in str(caught.value)
    with pytest.raises(TypeError, match="no fields"):
        resolve_parameters(Toy, path, {"spacing": 1.0}, stage="toy")

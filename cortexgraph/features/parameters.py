"""Parameters of ``features``: one frozen dataclass, validated on creation (docs/conventions.md,
"Parameters"). The stages record them: ``encoder`` in ``features@<encoder>`` (its name is part of the
stage id), ``test_every`` and ``test_offset`` in ``node-labels``."""

from __future__ import annotations

from dataclasses import dataclass

from cortexgraph.errors import ParameterError


@dataclass(frozen=True)
class FeaturesParameters:
    """Every parameter of ``cortexgraph features`` (``--device`` and mixed precision change the CY
    features only by floating-point rounding: they are not parameters).

    encoder : the encoder whose CY features to compute (derivatives/cortexgraph/encoders/<name>/);
        ``None``: the preset for the brain's image spacing.
    test_every, test_offset : the node-labels split: every ``test_every``-th annotated section
        (position ``test_offset``, 0-based) is a test section. Keep them equal to the encoder
        preset's (5 and 4) so that the GNN's test sections were not training sections of the
        encoder.
    """

    encoder: str | None = None
    test_every: int = 5
    test_offset: int = 4

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ParameterError:
            return ParameterError(
                f"features parameter {name} = {getattr(self, name)!r}: must be {rule}",
                fix=f"give {name} {rule}",
            )

        if isinstance(self.encoder, str) and not self.encoder:
            raise bad("encoder", 'an encoder name, or "none" (the preset for the image spacing)')
        if not _integer(self.test_every) or self.test_every < 2:
            raise bad("test_every", "an integer >= 2")
        if not _integer(self.test_offset) or not 0 <= self.test_offset < self.test_every:
            raise bad("test_offset", f"an integer in 0..{self.test_every - 1} (below test_every)")


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

"""Network files of the features package: plain values, CPU tensors, atomic writes, and errors that
name the file."""

from __future__ import annotations

import pytest
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.features.payload import cpu_state, read_payload, write_payload
from cortexgraph.training.checkpoint import plain


def test_payload_round_trip_and_errors(tmp_path):
    layer = torch.nn.Linear(3, 2)
    payload = {
        "format": "kind-a",
        "spec": plain({"widths": (1, 2), 3: [(4, 5)]}),
        "state": cpu_state(layer),
    }
    assert payload["spec"] == {"widths": [1, 2], "3": [[4, 5]]}
    path = write_payload(tmp_path / "net.pt", payload)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]  # no temporary file left
    options = dict(default_name="net.pt", what="test file", fix="make one")
    loaded = read_payload(tmp_path, "kind-a", **options)  # a folder: its default file
    assert loaded["spec"] == payload["spec"]
    torch.testing.assert_close(loaded["state"]["weight"], layer.weight.detach(), rtol=0, atol=0)
    with pytest.raises(CortexgraphError, match="not a cortexgraph test file") as error:
        read_payload(path, "kind-b", **options)
    assert "net.pt" in str(error.value) and "make one" in str(error.value)
    with pytest.raises(CortexgraphError, match="test file not found"):
        read_payload(tmp_path / "other.pt", "kind-a", **options)
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(CortexgraphError, match="cannot read the test file"):
        read_payload(tmp_path / "broken.pt", "kind-a", **options)

"""The QGraph file: round trip, deterministic bytes, refused versions and formats."""
import numpy as np
import pytest

from qdeploy.errors import QDeployError
from qdeploy.quant import qgraph as Q


def _qg():
    t = {
        "x": Q.QTensor("x", (1, 4), "float32"),
        "x_q": Q.QTensor("x_q", (1, 4), "int8", np.array([0.5], np.float32), np.array([-3], np.int32)),
        "w": Q.QTensor("w", (2, 4), "int8", np.array([0.1, 0.2], np.float32), np.zeros(2, np.int32), 0,
                       np.arange(8, dtype=np.int8).reshape(2, 4)),
    }
    n = [Q.QNode("Quantize", "q", ["x"], ["x_q"]),
         Q.QNode("FullyConnected", "fc", ["x_q", "w"], ["y"], {"k": [1, 2]},
                 {"requant": "q31", "multiplier": np.array([1 << 30, 3 << 29], np.int32),
                  "shift": np.array([-3, -4], np.int32), "act_min": -128}, ["gemm0"])]
    return Q.QGraph("m", "arm", "arm", ["x"], ["y"], t, n, {"warnings": ["w1"], "lut": np.arange(3)})


def test_round_trip_and_deterministic_bytes(tmp_path):
    qg = _qg()
    Q.save_qgraph(qg, tmp_path / "a.qgraph")
    back = Q.load_qgraph(tmp_path / "a.qgraph")
    assert back.tensors["w"].axis == 0 and back.tensors["w"].data.dtype == np.int8
    np.testing.assert_array_equal(back.tensors["w"].data, qg.tensors["w"].data)
    fc = back.nodes[1]
    assert fc.params["multiplier"].dtype == np.int32 and fc.params["act_min"] == -128
    assert fc.source == ["gemm0"] and fc.attrs == {"k": [1, 2]}
    np.testing.assert_array_equal(back.metadata["lut"], np.arange(3))
    assert Q.qgraph_bytes(back) == (tmp_path / "a.qgraph").read_bytes() == Q.qgraph_bytes(_qg())


def test_version_and_format_refused_in_one_line(tmp_path):
    qg = _qg()
    qg.version = 99
    Q.save_qgraph(qg, tmp_path / "v.qgraph")
    with pytest.raises(QDeployError, match="version 99") as e:
        Q.load_qgraph(tmp_path / "v.qgraph")
    assert "\n" not in str(e.value)
    (tmp_path / "junk.qgraph").write_bytes(b"not a zip")
    with pytest.raises(QDeployError, match="not a qdeploy"):
        Q.load_qgraph(tmp_path / "junk.qgraph")
    with pytest.raises(QDeployError, match="no such"):
        Q.load_qgraph(tmp_path / "none.qgraph")

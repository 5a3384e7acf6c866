"""onnxruntime sessions whose failures are one line.

onnxruntime raises its own exception types with multi-line messages and logs
warnings and errors in colour on stderr. Every session qdeploy makes goes
through :func:`session`, which silences that log (``log_severity_level = 4``:
fatal only; errors are raised) and turns a failure to load into a
:class:`~qdeploy.errors.QDeployError` naming the model; :func:`run` does the
same for a run and names the node when onnxruntime says which one failed.
"""
from __future__ import annotations

import contextlib
import io
import re

from .errors import QDeployError

_NODE = re.compile(r"node\.?\s*Name:\s*'([^']*)'", re.IGNORECASE)


def options(threads: int = 0, optimize: bool = True):
    """SessionOptions with onnxruntime's own logging silenced."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 4   # fatal only: errors are raised (and reported in one line), not logged
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return so


def reason(e: BaseException) -> str:
    """onnxruntime's message in one line, without its status-code prefix."""
    text = " ".join(str(e).split())
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    return text if len(text) <= 240 else text[:237] + "..."


def _node(e: BaseException) -> str:
    m = _NODE.search(str(e))
    return f" at node '{m.group(1)}'" if m else ""


def create(model_bytes: bytes, so=None):
    """``onnxruntime.InferenceSession`` on the CPU, with what onnxruntime's Python
    layer prints on a failed load ("EP Error ... Falling back", on stdout) kept
    off the user's terminal; failures are raised as they are."""
    import onnxruntime as ort
    with contextlib.redirect_stdout(io.StringIO()):
        return ort.InferenceSession(model_bytes, so or options(), providers=["CPUExecutionProvider"])


def session(model_bytes: bytes, what: str, so=None):
    """An onnxruntime CPU session of ``model_bytes``; ``what`` names the model
    in the error."""
    try:
        return create(model_bytes, so)
    except MemoryError:
        raise
    except Exception as e:
        raise QDeployError(f"{what}: onnxruntime cannot load the model{_node(e)} ({reason(e)}); "
                           "check the model (re-export it) or report the op") from None


def run(sess, names, feeds: dict, what: str):
    """``sess.run(names, feeds)``; a failure is one line naming the model and node."""
    try:
        return sess.run(names, feeds)
    except MemoryError:
        raise
    except Exception as e:
        raise QDeployError(f"{what}: onnxruntime failed{_node(e)} ({reason(e)}); check the "
                           "model and its input shapes") from None

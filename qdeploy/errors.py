"""The one error type users see.

Every problem with the user's input is raised as :class:`QDeployError` with one
line that says what is wrong, where (file, node name and op) and what to do.
The command line prints it as ``error: <message>`` and exits with code 2; no
traceback, no partial output.
"""


class QDeployError(Exception):
    """A problem with the user's input, reported as one line (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def where(node) -> str:
    """``node 'conv1' (Conv)`` for error messages."""
    return f"node '{node.name}' ({node.op})"

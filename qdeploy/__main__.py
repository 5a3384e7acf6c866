"""``python -m qdeploy``: the ``qdeploy`` command line itself (same commands, output, exit
codes and Ctrl-C/SIGTERM handling: :func:`qdeploy.interrupt.is_console_script` counts this
as the command)."""
from qdeploy.cli import main

main(prog_name="qdeploy")

"""`python -m finetune`."""

import sys

from finetune.cli import main
from gpucheck.proc import exit_code, signals_handled

if __name__ == "__main__":
    with signals_handled():  # SIGTERM/SIGHUP end the run like Ctrl-C: exit 128+signal
        try:
            code = main()
        except KeyboardInterrupt as exc:  # before main's own handler (e.g. importing torch)
            code = exit_code(exc)
    sys.exit(code)

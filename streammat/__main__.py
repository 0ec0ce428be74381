import sys

try:
    from .cli import entry
except KeyboardInterrupt:  # Ctrl-C while Python was still starting: nothing to finalize
    sys.exit(130)

entry()

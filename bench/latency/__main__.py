"""``python -m bench.latency RUN_DIR [...]``: see ``bench/latency/cli.py``."""

import sys

from bench.latency.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""Benchmark GAN compression by knowledge distillation: ``python run_bench.py --help``."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())

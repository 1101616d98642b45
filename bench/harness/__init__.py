"""Benchmarks of the harness itself: its training loop against an original-style loop (speed and quality),
and the one-call GPU check."""

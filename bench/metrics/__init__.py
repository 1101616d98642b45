"""What is measured about a generator: size, speed and quality, and the registry that names each metric.

Importing this package does not import torch: ``bench.base.metric_registry`` is read by ``reports/`` too.
"""

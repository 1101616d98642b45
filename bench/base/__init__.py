"""The torch-free floor every other layer stands on: errors, registries, the results directory's layout, atomic
file writes and the metric declarations the reports share with the evaluator."""

"""The benchmark harness: specs, training, measurement, records and the grid runner."""

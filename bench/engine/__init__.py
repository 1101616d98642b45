"""The engine: specs, the training loop, run records, the local grid runner and the files they keep safe."""

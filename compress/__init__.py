"""The compression methods, one module each, registered in ``bench.engine.methods`` on import in the order --help
lists them: ``width`` (narrower generators, ``compress.width``), ``prune`` (structured channel pruning with
torch-pruning, ``compress.prune``) and ``quantize`` (post-training fp16, bf16, int8 and OpenVINO int8,
``compress.quantize``)."""

from compress import width, prune, quantize  # noqa: F401  isort: skip

"""The compression methods, one module each, registered in ``bench.engine.methods`` on import in the order --help
lists them: ``width`` (narrower generators, ``compress.width``), ``prune`` (structured channel pruning with
torch-pruning, ``compress.prune``), ``online`` (a student trained beside its own teacher, OMGD, ``compress.online``)
and ``quantize`` (post-training fp16, bf16, int8 and OpenVINO int8, ``compress.quantize``)."""

from compress import width, prune, online, quantize  # noqa: F401  isort: skip

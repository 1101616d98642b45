"""The compression methods, one module each, registered in ``bench.engine.methods`` on import in the order --help
lists them: ``width`` (narrower generators, ``compress.width``), ``prune`` (structured channel pruning with
torch-pruning, ``compress.prune``), ``online`` (a student trained beside its own teacher, OMGD, ``compress.online``),
``once-for-all`` (one generator trained at every width, each cut from it, SlimGAN, ``compress.once_for_all``) and
``quantize`` (post-training fp16, bf16, int8 and OpenVINO int8, ``compress.quantize``)."""

from compress import width, prune, online, once_for_all, quantize  # noqa: F401  isort: skip

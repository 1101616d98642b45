"""Compression methods beyond width: structured channel pruning (``compress.prune``, torch-pruning) and
post-training quantization (``compress.quantize``: fp16, bf16, int8); ``compress.survey`` records which int8
backends quantize transposed convolutions on this machine."""

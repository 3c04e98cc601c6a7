"""Fused GRU recurrences as Pallas kernels: Triton for NVIDIA GPUs (`gpu`), Mosaic for TPUs
(`tpu`), behind two platform-independent contracts (`recurrence`) and one custom-VJP layer
(`layer`) with the same signature as the scan. The scan stays the fallback everywhere."""

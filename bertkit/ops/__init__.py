"""Fused training ops. Each op has a plain-torch reference, Triton kernels and a dispatching function.

Importing `bertkit.ops` never imports triton: the Triton implementations load on first use.
"""

from bertkit.ops.layer_mix import LayerOutputs, layer_mix, layer_mix_reference
from bertkit.ops.masked_lm_loss import masked_lm_loss, masked_lm_loss_chunked, masked_lm_loss_reference

__all__ = [
    "LayerOutputs",
    "layer_mix",
    "layer_mix_reference",
    "masked_lm_loss",
    "masked_lm_loss_chunked",
    "masked_lm_loss_reference",
]

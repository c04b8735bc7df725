"""Layer mixing (ELC-BERT, DenseFormer): a softmax-weighted sum over the outputs of the earlier layers.

    x = Σ_{i < n} softmax(w)_i · h_i,   w ∈ ℝⁿ (a layer's own logits), h_0 … h_{n-1} the earlier outputs

``layer_mix_reference(outputs, logits)`` is the plain-PyTorch reference over a stacked ``[n, *S]`` tensor (fp32
arithmetic; independently correct, never edited to match a kernel). Models use :class:`LayerOutputs`, which
collects the outputs of a forward pass (``append``) and mixes the first ``len(logits)`` of them (``mix``).
"""

from __future__ import annotations

import torch

__all__ = ["LayerOutputs", "layer_mix_reference"]


def _check(outputs_count: int, logits: torch.Tensor) -> None:
    if logits.dim() != 1 or logits.shape[0] < 1:
        raise ValueError(f"logits must be a non-empty vector [n]; got shape {tuple(logits.shape)}")
    if logits.shape[0] > outputs_count:
        raise ValueError(f"{logits.shape[0]} mixing logits but only {outputs_count} layer outputs")


def layer_mix_reference(outputs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``Σ_i softmax(logits)_i · outputs[i]`` over the first ``len(logits)`` entries of ``outputs [L, *S]``.

    Computed in fp32, returned in ``outputs.dtype``. Gradients flow to ``outputs`` and ``logits``.
    """
    _check(outputs.shape[0], logits)
    n = logits.shape[0]
    weights = torch.softmax(logits.float(), dim=0)  # [n]
    mixed = torch.tensordot(weights, outputs[:n].float(), dims=([0], [0]))  # [*S]
    return mixed.to(outputs.dtype)


class LayerOutputs:
    """The outputs ``h_0, h_1, …`` of one forward pass of a layer-mixing network, all of one shape.

    ``append(h)`` adds the next output; ``mix(logits)`` returns the softmax(logits)-weighted sum of the first
    ``len(logits)`` outputs (differentiable in the outputs and the logits). ``capacity`` is the most outputs the
    pass will append.
    """

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._outputs: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._outputs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._outputs[i]

    def append(self, h: torch.Tensor) -> None:
        if len(self._outputs) >= self.capacity:
            raise ValueError(f"LayerOutputs is full ({self.capacity} outputs)")
        if self._outputs and (h.shape != self._outputs[0].shape or h.dtype != self._outputs[0].dtype):
            raise ValueError(
                f"layer output {len(self._outputs)} is {tuple(h.shape)} {h.dtype}; the first was "
                f"{tuple(self._outputs[0].shape)} {self._outputs[0].dtype}"
            )
        self._outputs.append(h)

    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        _check(len(self._outputs), logits)
        return layer_mix_reference(torch.stack(self._outputs[: logits.shape[0]]), logits)

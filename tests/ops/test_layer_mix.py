"""layer_mix: the reference against an explicit loop (ELC-BERT's eager form), and LayerOutputs' bookkeeping."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bertkit.ops.layer_mix import LayerOutputs, layer_mix_reference  # noqa: E402


def _loop(outputs: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(logits.double(), dim=0)
    total = torch.zeros_like(outputs[0], dtype=torch.float64)
    for w, h in zip(weights, outputs, strict=False):
        total = total + w * h.double()
    return total


@pytest.mark.parametrize("n", [1, 2, 5])
def test_reference_equals_the_eager_loop_with_gradients(n: int):
    g = torch.Generator().manual_seed(n)
    outputs = [torch.randn(3, 7, 11, generator=g, requires_grad=True) for _ in range(n + 1)]
    logits = torch.randn(n, generator=g, requires_grad=True)
    mixed = layer_mix_reference(torch.stack(outputs), logits)
    expected = _loop(outputs[:n], logits)
    torch.testing.assert_close(mixed.double(), expected, atol=1e-6, rtol=1e-6)
    upstream = torch.randn(3, 7, 11, generator=g)
    got = torch.autograd.grad(mixed, [*outputs[:n], logits], upstream)
    want = torch.autograd.grad(expected, [*outputs[:n], logits], upstream.double())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5)


def test_layer_outputs_mix_the_first_len_logits_entries():
    outputs = LayerOutputs(capacity=3)
    hs = [torch.full((2, 4), float(i)) for i in range(3)]
    for h in hs:
        outputs.append(h)
    assert len(outputs) == 3
    torch.testing.assert_close(outputs.mix(torch.tensor([0.0, 0.0])), torch.full((2, 4), 0.5))
    torch.testing.assert_close(outputs.mix(torch.tensor([0.0, 0.0, 50.0])), torch.full((2, 4), 2.0))
    with pytest.raises(ValueError, match="full"):
        outputs.append(hs[0])
    with pytest.raises(ValueError, match="4 mixing logits but only 3"):
        outputs.mix(torch.zeros(4))
    other = LayerOutputs(capacity=2)
    other.append(hs[0])
    with pytest.raises(ValueError, match="layer output 1"):
        other.append(torch.zeros(3, 4))

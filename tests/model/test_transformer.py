"""Soft split / composition as convolutions equal the reference's unfold+Linear / Linear+fold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vimpnet_ros.model.transformer import MultiHeadAttention, SoftComp, SoftSplit


@pytest.mark.parametrize(("h", "w"), [(16, 16), (13, 22), (1, 1), (64, 40)])
def test_soft_split_equals_unfold_linear(h: int, w: int) -> None:
    torch.manual_seed(0)
    n, t, c, dim = 2, 3, 5, 16
    split = SoftSplit(c, dim, 7, 3, 3)
    frames = torch.randn(n * t, c, h, w)
    patches = F.unfold(frames, kernel_size=7, stride=3, padding=3)  # (n*t, c*49, L)
    expected = split.embedding(patches.transpose(1, 2)).reshape(n, -1, dim)
    got = split(frames, t)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(16, 16), (13, 22), (1, 1), (64, 40), (17, 18)])
def test_soft_comp_equals_linear_fold(h: int, w: int) -> None:
    torch.manual_seed(1)
    n, t, c, dim = 2, 3, 5, 16
    split = SoftSplit(c, dim, 7, 3, 3)
    comp = SoftComp(c, dim, 7, 3, 3)
    gh, gw = split.grid_size(h, w)
    tokens = torch.randn(n, t * gh * gw, dim)
    patches = comp.embedding(tokens).reshape(n * t, gh * gw, c * 49).transpose(1, 2)
    folded = F.fold(patches, output_size=(h, w), kernel_size=7, stride=3, padding=3)
    expected = comp.bias_conv(folded)
    got = comp(tokens, t, (gh, gw), (h, w))
    assert got.shape == (n * t, c, h, w)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_attention_equals_explicit_softmax() -> None:
    torch.manual_seed(2)
    attention = MultiHeadAttention(32, 4)
    q_in, kv_in = torch.randn(2, 7, 32), torch.randn(2, 9, 32)
    q = attention.query_embedding(q_in).view(2, 7, 4, 8).transpose(1, 2)
    k = attention.key_embedding(kv_in).view(2, 9, 4, 8).transpose(1, 2)
    v = attention.value_embedding(kv_in).view(2, 9, 4, 8).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    expected = attention.output_linear((weights @ v).transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(attention(q_in, kv_in), expected, atol=1e-5, rtol=1e-5)

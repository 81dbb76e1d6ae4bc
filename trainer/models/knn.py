"""Nearest neighbours in torch: chunked matrix products, on whatever device the tensors are on.

Why not faiss: a memory bank of a few thousand to a few hundred thousand patch features is
searched exactly by one matmul per chunk (``|a|^2 - 2ab + |b|^2``), on the GPU when there is one,
and the same arithmetic exports to ONNX (MatMul, ReduceMin) for the bundle; an extra native
dependency would have to earn its place in a measured comparison first.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ELEMENTS = 1 << 24  # distance-matrix entries per chunk: 64 MB of float32


def squared_distances(query: Tensor, bank: Tensor, bank_sq: Tensor | None = None) -> Tensor:
    """(Q, M) squared Euclidean distances, clamped at 0 (rounding can dip below)."""
    if bank_sq is None:
        bank_sq = (bank * bank).sum(-1)
    products = query @ bank.T
    return ((query * query).sum(-1, keepdim=True) - 2 * products + bank_sq).clamp_min_(0)


def nearest(
    query: Tensor, bank: Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[Tensor, Tensor]:
    """Distance to, and index of, the nearest ``bank`` row of every ``query`` row.

    Args:
        query: (Q, D) features.
        bank: (M, D) features.
        chunk_elements: bound on the (rows x M) distance block held at once.
    """
    if len(bank) == 0:
        raise ValueError("nearest: the bank is empty")
    bank_sq = (bank * bank).sum(-1)
    rows = max(1, chunk_elements // len(bank))
    dist, index = [], []
    for start in range(0, len(query), rows):
        d2 = squared_distances(query[start : start + rows], bank, bank_sq)
        value, where = d2.min(dim=1)
        dist.append(value.sqrt())
        index.append(where)
    if not dist:
        return query.new_zeros(0), torch.zeros(0, dtype=torch.long, device=query.device)
    return torch.cat(dist), torch.cat(index)


def neighbour_table(bank: Tensor, k: int, chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """(M, k) indices of each bank row's ``k`` nearest rows, itself first (distance 0)."""
    k = min(int(k), len(bank))
    bank_sq = (bank * bank).sum(-1)
    rows = max(1, chunk_elements // max(1, len(bank)))
    out = []
    for start in range(0, len(bank), rows):
        d2 = squared_distances(bank[start : start + rows], bank, bank_sq)
        # itself first: its exact distance is 0, the matmul's may be a rounding error above
        d2[torch.arange(len(d2)), torch.arange(start, start + len(d2))] = -1.0
        out.append(d2.topk(k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)

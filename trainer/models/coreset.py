"""Greedy k-center coreset selection: a few percent of the patch features that cover them all.

PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022,
arXiv:2106.08265, section 3.2) keeps a memory bank of nominal patch features and reduces it by
iterative greedy approximation of the minimax facility location: each step adds the feature
farthest from those chosen so far, so that every feature left out lies close to a kept one. The
distances are computed on a random Johnson-Lindenstrauss projection to a few dimensions (the
paper's speed-up); selection is exact on those projected points.

Each step reads every projected point once (memory-bound): about ``n x N x dim x 4`` bytes in all.
"""

from __future__ import annotations

import torch
from torch import Tensor


def greedy_coreset(
    features: Tensor, n: int, projection_dim: int | None = 128, seed: int = 0
) -> Tensor:
    """Indices of ``n`` rows of ``features`` (N, D) chosen by greedy k-center.

    Args:
        features: the full bank, on any device.
        n: rows to keep (all of them when n >= N).
        projection_dim: dimensions of the random projection the distances are measured in;
            None or >= D measures them on the features themselves.
        seed: the projection's and the first centre's seed (the same seed, the same coreset).
    """
    total = len(features)
    if n >= total:
        return torch.arange(total, device=features.device)
    if n < 1:
        raise ValueError(f"greedy_coreset: n={n} must be at least 1")
    generator = torch.Generator().manual_seed(int(seed))
    points = features.float()
    if projection_dim and projection_dim < features.shape[1]:
        projection = torch.randn(features.shape[1], projection_dim, generator=generator)
        points = points @ (projection / projection_dim**0.5).to(points.device)
    first = int(torch.randint(total, (1,), generator=generator))
    chosen = torch.empty(n, dtype=torch.long, device=features.device)
    chosen[0] = first
    squares = (points * points).sum(1)

    def d2_to(index: int) -> Tensor:  # one matrix-vector product, no (N, dim) temporary
        return squares - 2 * (points @ points[index]) + squares[index]

    min_d2 = d2_to(first)
    for i in range(1, n):
        nxt = int(min_d2.argmax())
        chosen[i] = nxt
        torch.minimum(min_d2, d2_to(nxt), out=min_d2)
    return chosen

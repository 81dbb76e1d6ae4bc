"""PatchCore: anomaly detection trained on good images only, as a LightningModule.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022 (arXiv:2106.08265).
Written from the paper, no code copied:

1. Locally aware patch features (section 3.1): the feature maps of middle stages of a CNN
   (timm's ``forward_intermediates``: the network of the run, loaded by timm's real factory),
   each averaged over a 3x3 neighbourhood, the coarser ones upsampled to the finest and
   concatenated: one feature per patch of the finest map.
2. A memory bank of every patch feature of the good training images, reduced by greedy k-center
   coreset selection to ``coreset_fraction`` of them (section 3.2, ``trainer.models.coreset``).
3. Scoring (section 3.3): each test patch's distance to its nearest bank feature; the image's
   score is the largest of them, re-weighted by how isolated that nearest bank feature is among
   its ``num_neighbours`` neighbours in the bank (eq. 7); the anomaly map is the patch distances
   upsampled to the input and smoothed by a Gaussian of ``map_sigma`` pixels.

Training is one pass over the good training images (no optimizer, frozen backbone in eval mode);
the bank is built before the first validation, so the Trainer, the checkpoints (the bank is a
buffer of the state dict) and the callbacks are those of the classifier. ``forward`` maps
normalised images to ``(scores, maps)`` with tensor operations only (matmul, min, gather,
softmax, conv): the graph ONNX export writes with the bank inside.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.errors import ConfigError
from trainer.metrics.anomaly import AnomalyMetrics
from trainer.models.backbone import create_backbone, preprocessing_of
from trainer.models.coreset import greedy_coreset
from trainer.models.knn import CHUNK_ELEMENTS, neighbour_table

log = logging.getLogger(__name__)

KIND = "anomaly"  # trainer_metadata["kind"]: what evaluation, export and serving branch on
PENDING_KEY = "patchcore_pending_features"  # features of a fit saved mid-epoch
BANK_BYTES_SHARE = 0.5  # of this machine's memory, the most the features before coreset may take


def median_distance(features: Tensor, sample: int = 2048) -> float:
    """The median Euclidean distance between pairs of (a fixed sample of) feature rows."""
    generator = torch.Generator().manual_seed(0)
    rows = features[torch.randperm(len(features), generator=generator)[:sample]].float()
    distances = torch.cdist(rows, rows)
    return float(distances[torch.triu_indices(len(rows), len(rows), 1).unbind()].median())


def gaussian_kernel(sigma: float) -> Tensor:
    """(K,) normalised 1-D Gaussian, K = 2 * ceil(4 sigma) + 1 (the paper's sigma 4); the map is
    smoothed by it along rows, then columns: the 2-D Gaussian at 2K instead of K^2 products."""
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


class PatchCore(L.LightningModule):
    """A memory bank of good patch features; distance to it is the anomaly score.

    Args:
        backbone: timm model name (a CNN with ``forward_intermediates``: ResNets, ConvNeXt, ...).
        class_names: the data's classes; images of ``good_class`` are normal, any other a defect.
        good_class: the normal class, the only one the bank is built from.
        layers: indices of the feature stages used (timm's ``feature_info`` order; for a ResNet
            2 = layer2, stride 8, and 3 = layer3, stride 16: the paper's choice).
        pretrained, pretrained_path, require_pretrained: as for the classifier (timm's loader;
            a checkpoint of this project gives its backbone).
        input_size: square input side (None: the backbone's pretrained size).
        coreset_fraction: share of the training patch features the bank keeps (0 < f <= 1).
        projection_dim: dimensions of the random projection coreset selection measures in.
        neighbourhood: side of the patch neighbourhood each feature averages (the paper's p = 3).
        num_neighbours: b of the re-weighting (eq. 7); 1 turns it off.
        map_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        position_weight: weight of a patch's place in the image, appended to its feature: 0
            compares a patch with good patches from anywhere (objects in any pose); above 0,
            images filmed in a fixed pose (boards in a fixture) are compared with good patches
            near the same place, so that bare pads where a component belongs stand out even
            though bare pads are normal elsewhere. Crossing the whole image costs
            ``position_weight`` times the median distance between training patch features.
        max_bank_share: the most of this machine's memory the features before coreset may take;
            above it, fitting is refused before extraction, naming ``model.coreset_fraction``.
        model_kwargs: extra keyword arguments of ``timm.create_model``.
    """

    kind = KIND

    def __init__(
        self,
        backbone: str,
        class_names: list[str],
        good_class: str = "good",
        layers: Sequence[int] = (2, 3),
        pretrained: bool = True,
        pretrained_path: str | None = None,
        require_pretrained: bool = False,
        input_size: int | str | None = None,
        coreset_fraction: float = 0.1,
        projection_dim: int = 128,
        neighbourhood: int = 3,
        num_neighbours: int = 9,
        map_sigma: float = 4.0,
        position_weight: float = 0.0,
        max_bank_share: float = BANK_BYTES_SHARE,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0 < float(coreset_fraction) <= 1:
            raise ConfigError(f"model.coreset_fraction: {coreset_fraction} is not in (0, 1]")
        if good_class not in class_names:
            raise ConfigError(
                f"data.good_class: '{good_class}' is not one of the data's classes {class_names}; "
                "an anomaly model learns the good class alone"
            )
        self.save_hyperparameters(logger=False)
        self.class_names = list(class_names)
        self.good_index = self.class_names.index(good_class)
        self.automatic_optimization = False
        self.net, self.pretrained_loaded = create_backbone(
            backbone,
            num_classes=len(self.class_names),
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            require_pretrained=require_pretrained,
            **dict(model_kwargs or {}),
        )
        self.layers = [int(i) for i in layers]
        stages = len(self.net.feature_info)
        if not self.layers or any(not 0 <= i < stages for i in self.layers):
            raise ConfigError(
                f"model.layers: {list(layers)} must be feature stages of {backbone} (0 to "
                f"{stages - 1}: {[f['module'] for f in self.net.feature_info]})"
            )
        self.net.prune_intermediate_layers(self.layers, prune_head=True)
        self.net.requires_grad_(False)
        self.feature_dim = sum(int(self.net.feature_info[i]["num_chs"]) for i in self.layers)
        if float(position_weight) < 0:
            raise ConfigError(f"model.position_weight: {position_weight} must be >= 0")
        self.positional = float(position_weight) > 0
        self.stride = min(int(self.net.feature_info[i]["reduction"]) for i in self.layers)
        self.preprocessing = preprocessing_of(self.net, input_size)
        mean = torch.tensor(self.preprocessing["mean"]).view(1, 3, 1, 1) * 255
        self.register_buffer("mean", mean)
        self.register_buffer("std", torch.tensor(self.preprocessing["std"]).view(1, 3, 1, 1) * 255)
        self.register_buffer("smoothing", gaussian_kernel(float(map_sigma)), persistent=False)
        bank_dim = self.feature_dim + (2 if self.positional else 0)
        self.register_buffer("memory_bank", torch.zeros(0, bank_dim))
        # position_weight x the training features' median distance: set when the bank is built
        self.register_buffer("position_scale", torch.tensor(0.0))
        self.register_buffer("bank_neighbours", torch.zeros(0, 1, dtype=torch.long))
        # |m|^2 of each bank row, kept with the bank (set_bank): the search is then one Gemm
        self.register_buffer("bank_sq", torch.zeros(0), persistent=False)
        self._train_features: list[Tensor] = []
        self._grid = (0, 0)
        self._resumed_mid_fit = False
        self._fit_started = 0.0
        self.fit_seconds = {"extract": 0.0, "coreset": 0.0}  # recorded in the checkpoint
        self.val_metrics = AnomalyMetrics(self.class_names, good_class)
        self.test_metrics = AnomalyMetrics(self.class_names, good_class)
        self.run_metadata: dict[str, Any] = {}
        side = self.preprocessing["input_size"][-1]
        self.example_input_array = torch.zeros(1, 3, side, side)

    # ------------------------------------------------------------------ features and scores

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) images to the backbone's normalised float input."""
        return (images.float() - self.mean) / self.std

    def patch_features(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """(N, H*W, D) locally aware patch features of normalised images, and (H, W)."""
        maps = self.net.forward_intermediates(x, indices=self.layers, intermediates_only=True)
        k = int(self.hparams.neighbourhood)
        size = maps[0].shape[-2:]
        pooled = []
        for fmap in maps:
            if k > 1:
                fmap = F.avg_pool2d(fmap, k, stride=1, padding=k // 2, count_include_pad=False)
            if fmap.shape[-2:] != size:
                fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
            pooled.append(fmap)
        features = torch.cat(pooled, dim=1)
        n, d, h, w = features.shape
        return features.reshape(n, d, h * w).transpose(1, 2), (int(h), int(w))

    def with_position(self, features: Tensor, h: int, w: int) -> Tensor:
        """(N, H*W, D + 2): each patch feature followed by its (row, column) in [0, 1], scaled by
        ``position_scale``; unchanged when the model is not positional."""
        if not self.positional:
            return features
        rows = torch.arange(h, device=features.device, dtype=features.dtype) / max(1, h - 1)
        cols = torch.arange(w, device=features.device, dtype=features.dtype) / max(1, w - 1)
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(1, h * w, 2)
        grid = (grid * self.position_scale).expand(features.shape[0], -1, -1)
        return torch.cat([features, grid], dim=-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Anomaly scores (N,) and maps (N, 1, S, S) of normalised images (N, 3, S, S)."""
        features, (h, w) = self.patch_features(x)
        features = self.with_position(features, h, w)
        n, p, d = features.shape
        if len(self.memory_bank) == 0:  # before fitting (model summary, graph): nothing to compare
            return features.new_zeros(n), features.new_zeros(n, 1, *x.shape[-2:])
        flat = features.reshape(n * p, d)
        # |f - m|^2 = |f|^2 + (|m|^2 - 2 f.m): the bracket is one Gemm (bias |m|^2), and |f|^2,
        # the same for every m, is added after the minimum: no pass over the (patches, bank) matrix
        partial = torch.addmm(self.bank_sq, flat, self.memory_bank.T, alpha=-2)
        nearest_partial, nearest = partial.min(dim=1)
        nearest_d2 = (nearest_partial + (flat * flat).sum(-1)).clamp_min(0)
        patch_dist = nearest_d2.sqrt().reshape(n, p)
        top, where = patch_dist.max(dim=1)
        scores = top * self._isolation_weight(features, nearest.reshape(n, p), where)
        maps = patch_dist.reshape(n, 1, h, w)
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
        radius = len(self.smoothing) // 2
        maps = F.pad(maps, (radius,) * 4, mode="replicate")
        maps = F.conv2d(maps, self.smoothing.view(1, 1, -1, 1))
        maps = F.conv2d(maps, self.smoothing.view(1, 1, 1, -1))
        return scores, maps

    def _isolation_weight(self, features: Tensor, nearest: Tensor, where: Tensor) -> Tensor:
        """Eq. 7: 1 - softmax over the distances from the worst patch to its nearest bank feature
        m* and m*'s neighbours, taken at m*: near 1 where m* is isolated (the score stays), 1 - 1/b
        in a dense region of the bank."""
        if self.bank_neighbours.shape[1] < 2:
            return torch.ones_like(where, dtype=features.dtype)
        worst = features.gather(1, where[:, None, None].expand(-1, 1, features.shape[-1]))
        m_star = nearest.gather(1, where[:, None])[:, 0]
        support = self.memory_bank[self.bank_neighbours[m_star]]  # (N, b, D), m* first
        dist = (worst - support).pow(2).sum(-1).sqrt()
        return 1 - dist.softmax(dim=1)[:, 0]

    # ------------------------------------------------------------------ fitting the bank

    def on_train_epoch_start(self) -> None:
        self.net.eval()  # batch norms keep their statistics: the features are fixed functions
        if not self._resumed_mid_fit:  # a run resumed mid-epoch keeps the features saved with it
            self._train_features = []
        self._resumed_mid_fit = False
        self._fit_started = time.perf_counter()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, Tensor):  # example_input_array: already float
            return batch
        images, target = batch
        return self.normalize(images), target

    @torch.no_grad()
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        keep = y == self.good_index
        if self.current_epoch == 0 and batch_idx == 0:
            self._check_bank_size()
        if keep.any():
            features, self._grid = self.patch_features(x[keep])
            self._train_features.append(features.to("cpu"))

    def _check_bank_size(self) -> None:
        """Refuse, before extraction, a bank whose features would not fit in memory."""
        from trainer.utils.memory import physical_memory

        trainer = self.trainer
        images = int(trainer.num_training_batches) * int(
            getattr(trainer.datamodule, "batch_size", 1)
        )
        side = int(self.preprocessing["input_size"][-1])
        patches = images * math.ceil(side / self.stride) ** 2
        need = patches * self.feature_dim * 4 * max(1, trainer.world_size)
        budget = float(self.hparams.max_bank_share) * physical_memory()
        if budget and need > budget:
            raise ConfigError(
                f"model.coreset_fraction: the training images' {patches:,} patch features take "
                f"{need / 1e9:.1f} GB before coreset selection, more than "
                f"{100 * self.hparams.max_bank_share:.0f}% of this machine's memory "
                f"({budget / 1e9:.1f} GB); use fewer or smaller training images "
                "(model.input_size) or later feature layers (model.layers)"
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # built after the last batch, before any epoch-end hook: a checkpoint saved at the epoch's
        # end (with or without validation) holds the bank, one saved mid-epoch the features so far
        if batch_idx + 1 >= int(self.trainer.num_training_batches) and self._train_features:
            self.build_bank()

    def on_validation_epoch_start(self) -> None:
        if self._train_features:  # validation runs before on_train_epoch_end in Lightning
            self.build_bank()

    def on_train_epoch_end(self) -> None:
        if self._train_features:  # no validation this epoch
            self.build_bank()

    @torch.no_grad()
    def fit_images(self, images: Tensor) -> None:
        """Build the bank from normalised good images given at once (tests, scripts; a training
        run streams them through ``training_step`` instead)."""
        features, self._grid = self.patch_features(images)
        self._train_features = [features.cpu()]
        self.build_bank()

    @torch.no_grad()
    def build_bank(self) -> None:
        """Gather every process's features, select the coreset, and index its neighbours."""
        started = time.perf_counter()
        features = torch.cat(self._train_features)
        self._train_features = []
        if self._trainer is not None and self._trainer.world_size > 1:
            gathered = self.all_gather(features.to(self.device))  # equal shards (padded sampler)
            features = gathered.reshape(-1, *features.shape[1:]).cpu()
        if self.positional:
            self.position_scale.fill_(
                float(self.hparams.position_weight) * median_distance(features.flatten(0, 1))
            )
            features = self.with_position(features, *self._grid)
        features = features.flatten(0, 1)
        n = max(1, round(float(self.hparams.coreset_fraction) * len(features)))
        chosen = greedy_coreset(
            features.to(self.device), n, int(self.hparams.projection_dim), seed=0
        )
        bank = features.to(self.device)[chosen].contiguous()
        self.set_bank(bank)
        self.fit_seconds = {
            "extract": round(started - self._fit_started, 2),
            "coreset": round(time.perf_counter() - started, 2),
        }
        log.info(
            "PatchCore memory bank: %d of %d patch features (coreset %.3g), %d dimensions, "
            "%.1f MB; features extracted in %.1f s, coreset and neighbours in %.1f s",
            len(bank),
            len(features),
            self.hparams.coreset_fraction,
            bank.shape[1],
            bank.numel() * 4 / 1e6,
            self.fit_seconds["extract"],
            self.fit_seconds["coreset"],
        )

    def set_bank(self, bank: Tensor) -> None:
        """Make ``bank`` (M, D) the memory bank, with its rows' norms and neighbour table."""
        self.memory_bank = bank
        self.bank_sq = (bank * bank).sum(-1)
        self.bank_neighbours = neighbour_table(
            bank, int(self.hparams.num_neighbours), CHUNK_ELEMENTS
        )

    # ------------------------------------------------------------------ validation and test

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        if len(self.memory_bank) == 0:  # Lightning's sanity check, before any fitting
            return None
        scores, _ = self(batch[0])
        self.val_metrics.update(scores, batch[1])
        return scores  # to callbacks (trainer.callbacks.anomaly_maps: score histograms)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        scores, _ = self(batch[0])
        self.test_metrics.update(scores, batch[1])

    def _log_split(self, metrics: AnomalyMetrics, prefix: str) -> None:
        values = metrics.compute(prefix)
        values[f"{prefix}/bank_size"] = self.memory_bank.new_tensor(float(len(self.memory_bank)))
        self.log_dict(values, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        if len(self.memory_bank) == 0:
            return
        self._log_split(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_split(self.test_metrics, "test")

    def configure_optimizers(self) -> None:
        return None  # nothing is learnt by gradient: the bank is the model

    # ------------------------------------------------------------------ checkpoints

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # the bank's size is known only from the checkpoint: take its shape before loading
        state_dict.setdefault(prefix + "position_scale", torch.tensor(0.0))  # older checkpoints
        for name in ("memory_bank", "bank_neighbours"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=self.memory_bank.device))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.bank_sq = (self.memory_bank * self.memory_bank).sum(-1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if self._train_features:  # saved mid-fit (preemption): a resumed run keeps extracting
            checkpoint[PENDING_KEY] = {
                "features": torch.cat(self._train_features),
                "grid": list(self._grid),
            }
        checkpoint["trainer_metadata"] = {
            **self.run_metadata,
            "kind": KIND,
            "class_names": self.class_names,
            "preprocessing": self.preprocessing,
            "backbone": self.hparams.backbone,
            "anomaly": {
                "method": "patchcore",
                "layers": self.layers,
                "feature_dim": self.feature_dim,
                "bank_size": int(len(self.memory_bank)),
                "coreset_fraction": float(self.hparams.coreset_fraction),
                "num_neighbours": int(self.hparams.num_neighbours),
                "good_class": self.class_names[self.good_index],
                "position_weight": float(self.hparams.position_weight),
                "fit_seconds": dict(self.fit_seconds),
            },
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}
            if trainer
            else {},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        pending = checkpoint.get(PENDING_KEY)
        if pending is not None:
            self._train_features = [pending["features"]]
            self._grid = tuple(pending["grid"])
            self._resumed_mid_fit = True
        self.run_metadata = dict(checkpoint.get("trainer_metadata", {}))
        saved = self.run_metadata.get("anomaly", {}).get("fit_seconds")
        self.fit_seconds = dict(saved or self.fit_seconds)

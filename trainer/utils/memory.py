"""Refuse a training step that cannot fit in memory, before it runs.

On a CPU the kernel kills a process that outgrows memory (exit -9, no message) or the machine
swaps for hours; on a GPU the step fails deep inside the first batch. Both are a setting's fault
(``model.input_size``, ``data.batch_size``), so the run measures a lower bound of what one step
needs and says which to lower. The bound comes from a forward pass on the meta device (shapes, no
data, milliseconds): every convolution, linear and norm layer with a trainable weight keeps its
input for the backward pass, and every trainable weight gets a gradient. Temporaries, other saved
tensors and the optimizer's state come on top, so a refused step could never have run.

``physical_memory`` is the RAM that shares are taken of (the decoded-image cache, PatchCore's
bank): the machine's, or a container's or SLURM job's cgroup limit where that is lower.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.errors import ConfigError

# Layers whose weight's gradient reads their input: the input stays in memory until backward.
_KEPT_INPUT = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
)


def step_lower_bound(net: nn.Module, input_shape: tuple[int, ...], batch: int) -> int | None:
    """Bytes one training step at ``batch`` images of ``input_shape`` (C, H, W) needs at least,
    in the parameters' dtype; None when the network cannot run on the meta device or recomputes
    its activations in backward (gradient checkpointing keeps no inputs)."""
    if any(getattr(m, "grad_checkpointing", False) for m in net.modules()):
        return None
    meta = {
        name: torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)
        for name, t in [*net.named_parameters(), *net.named_buffers()]
    }
    kept: dict[int, torch.Tensor] = {}  # by identity: a tensor two layers read is kept once

    def keep(module: nn.Module, args: tuple, output: object) -> None:
        if args and isinstance(args[0], torch.Tensor):
            base = args[0]
            while base._base is not None:  # a view keeps its whole base alive: count that once
                base = base._base
            kept[id(base)] = base

    training = [  # a frozen layer's input is not needed for its (absent) weight gradient
        m
        for m in net.modules()
        if isinstance(m, _KEPT_INPUT) and any(p.requires_grad for p in m.parameters(False))
    ]
    hooks = [m.register_forward_hook(keep) for m in training]
    x = torch.empty((batch, *input_shape), device="meta")
    was_training = net.training
    try:
        net.train()
        with _eager():
            torch.func.functional_call(net, meta, (x,))
    except Exception:  # noqa: BLE001 - a network with data-dependent code: nothing to bound
        return None
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    activations = sum(t.untyped_storage().nbytes() for t in kept.values())
    gradients = sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
    return activations + gradients


def _eager() -> contextlib.AbstractContextManager:
    """model.compile=true: run the network eagerly here, not traced for the meta shapes."""
    stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return stance("force_eager") if stance else contextlib.nullcontext()


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can take on ``device`` at the most: a CPU's available RAM and
    free swap, capped by the cgroups' limits (a container's, a SLURM job's); a GPU's free memory.
    None where nothing says."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    meminfo = _meminfo()
    if meminfo is None:
        return None
    available, swap_free = meminfo
    ceiling = _cgroup_ceiling(swap_free=swap_free)
    return available + swap_free if ceiling is None else min(available + swap_free, ceiling)


def physical_memory() -> int:
    """RAM this process may hold, in bytes: the machine's, capped by its cgroups' limits (0
    where the OS does not say: nothing is then cached)."""
    try:
        machine = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0
    ceiling = _cgroup_ceiling(swap_free=0)
    return machine if ceiling is None else min(machine, ceiling)


def _meminfo(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int] | None:
    """(MemAvailable, SwapFree) in bytes."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
        return tuple(int(fields[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        return None


def _limit(path: Path) -> int | None:
    """A cgroup limit file in bytes; None for no limit ("max", v1's ~2^63, or no file)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) < 2**60 else None


def _cgroup_ceiling(
    swap_free: int,
    root: Path = Path("/sys/fs/cgroup"),
    membership: Path = Path("/proc/self/cgroup"),
) -> int | None:
    """The most memory this process's cgroups (v2 or v1) let it hold, RAM limit plus the swap
    they allow, the tightest from its own cgroup up to the root; None where none sets a limit.
    A limit, not limit minus usage: usage counts page cache the kernel gives back on demand, so
    a refusal stays a certainty."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    ceilings = []
    for line in lines:
        if line.count(":") < 2:
            continue  # not "id:controllers:path"
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: memory.max, and memory.swap.max on top of it
            base, ram, swap = root, "memory.max", "memory.swap.max"
        elif "memory" in controllers.split(","):  # v1: memsw counts RAM and swap together
            base, ram, swap = root / "memory", "memory.limit_in_bytes", None
        else:
            continue
        group = base / path.strip().lstrip("/")
        for folder in [group, *group.parents]:
            limit = _limit(folder / ram)
            if limit is not None:
                if swap is None:
                    both = _limit(folder / "memory.memsw.limit_in_bytes")
                    ram_and_swap = limit + swap_free
                    ceilings.append(ram_and_swap if both is None else min(ram_and_swap, both))
                else:
                    allowed = _limit(folder / swap)
                    ceilings.append(
                        limit + min(swap_free, allowed if allowed is not None else swap_free)
                    )
            if folder == base:
                break
    return min(ceilings) if ceilings else None


def check_step_fits(
    net: nn.Module,
    input_shape: tuple[int, ...],
    batch: int,
    device: torch.device,
    processes: int = 1,
    half: bool = False,
) -> None:
    """One line naming ``model.input_size`` and ``data.batch_size`` when a step cannot fit.

    ``processes``: processes sharing this memory (CPU DDP: every rank is on one machine);
    ``half``: mixed precision keeps 16-bit activations, half the fp32 bytes.
    """
    need = step_lower_bound(net, input_shape, batch)
    have = available_bytes(device)
    if need is None or have is None:
        return
    need = (need // 2 if half else need) * processes
    if need <= have:
        return
    fits = math.floor(batch * have / need)  # the bound grows about linearly with the batch
    remedy = (
        f"lower data.batch_size (at most {fits} passes this bound) or model.input_size"
        if fits >= 1
        else "even one image does not fit: lower model.input_size"
    )
    where = "GPU memory" if device.type == "cuda" else "memory (RAM and swap)"
    shared = f" for {processes} processes" if processes > 1 else ""
    raise ConfigError(
        f"model.input_size={input_shape[-1]}, data.batch_size={batch}: one training step needs "
        f"at least {need / 2**30:.1f} GiB{shared}, and at most {have / 2**30:.1f} GiB of {where} "
        f"is free for it; {remedy}"
    )


def check_training_fits(trainer: Any, model: nn.Module, batch: int) -> None:
    """``check_step_fits`` for a Lightning run: its device, precision and processes per machine
    (CPU DDP: every process on this machine's memory). A model with nothing to train is skipped:
    PatchCore bounds its own memory bank."""
    if not any(p.requires_grad for p in model.parameters()):
        return
    device = trainer.strategy.root_device
    check_step_fits(
        model,
        tuple(model.preprocessing["input_size"]),
        batch,
        device,
        processes=int(trainer.num_devices) if device.type == "cpu" else 1,
        half=str(trainer.precision).startswith(("16", "bf16")),
    )

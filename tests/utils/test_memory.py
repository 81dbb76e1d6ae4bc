"""A training step that cannot fit in memory is refused before it runs, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import ROOT, TINY_BOARDS
from tests.tasks.test_cli import assert_clean_error, run_train
from trainer.errors import ConfigError
from trainer.tasks.train import train
from trainer.utils import memory
from trainer.utils.memory import check_step_fits, step_lower_bound


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
        nn.Flatten(),
        nn.Linear(128, 5),
    )


def test_the_bound_counts_each_kept_input_and_gradient_by_hand() -> None:
    net = small_net()
    # inputs of conv 1 (the images), conv 2 and the linear layer at batch 2 of 8x8, float32
    inputs = 4 * 2 * (3 * 64 + 4 * 64 + 2 * 64)
    gradients = 4 * ((3 * 4 * 9 + 4) + (4 * 2 + 2) + (128 * 5 + 5))
    assert step_lower_bound(net, (3, 8, 8), 2) == inputs + gradients
    net[0].requires_grad_(False)  # a frozen first layer keeps neither its input nor a gradient
    assert step_lower_bound(net, (3, 8, 8), 2) == inputs - 4 * 2 * 3 * 64 + gradients - 4 * 112


def test_the_bound_is_never_above_what_autograd_keeps() -> None:
    """The reference: scripts/bench/memory_bound.py runs a real step and counts autograd's own
    saved tensors (unique storages) and a gradient per weight."""
    result = subprocess.run(
        [sys.executable, "scripts/bench/memory_bound.py", "--batch", "2"]
        + ["--backbones", "resnet10t:64", "vit_tiny_patch16_224:224"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["backbone"] for r in rows] == ["resnet10t", "vit_tiny_patch16_224"]
    for row in rows:
        assert 0.5 * row["autograd_mib"] < row["bound_mib"] <= row["autograd_mib"], row


def test_free_memory_is_read_from_the_kernels_files(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal: 9000 kB\nMemFree: 100 kB\nMemAvailable: 1000 kB\nSwapFree: 24 kB\n"
    )
    assert memory._meminfo(meminfo) == (1000 * 1024, 24 * 1024)
    assert memory._meminfo(tmp_path / "absent") is None


def test_cgroup_limits_cap_it_wherever_they_are_set(tmp_path: Path) -> None:
    mib, swap_free = 2**20, 5 * 2**20
    membership = tmp_path / "self_cgroup"

    def ceiling() -> int | None:
        return memory._cgroup_ceiling(swap_free, tmp_path / "cg", membership)

    # v2, a SLURM job's cgroup inside its user's: the tighter level counts
    job = tmp_path / "cg" / "user" / "job_7"
    job.mkdir(parents=True)
    membership.write_text("0::/user/job_7\n")
    (job.parent / "memory.max").write_text(f"{8 * mib}\n")
    (job.parent / "memory.swap.max").write_text("0\n")  # no swap: the RAM limit is all
    (job / "memory.max").write_text("max\n")
    assert ceiling() == 8 * mib
    (job / "memory.max").write_text(f"{2 * mib}\n")  # swap.max absent here: any free swap
    assert ceiling() == 2 * mib + swap_free
    (job / "memory.swap.max").write_text(f"{mib}\n")
    assert ceiling() == 3 * mib  # 2 MiB and 1 MiB of swap, under the user's 8 MiB
    # usage is not subtracted: page cache in memory.current is given back on demand
    (job / "memory.current").write_text(f"{2 * mib}\n")
    assert ceiling() == 3 * mib
    # v1: the memory controller's own tree; memsw.limit counts RAM and swap together
    v1 = tmp_path / "cg" / "memory" / "slurm" / "job_8"
    v1.mkdir(parents=True)
    membership.write_text("4:memory:/slurm/job_8\n3:cpuset:/\n0::/\n")
    (tmp_path / "cg" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory.limit_in_bytes").write_text(f"{4 * mib}\n")
    assert ceiling() == 4 * mib + swap_free
    (v1 / "memory.memsw.limit_in_bytes").write_text(f"{6 * mib}\n")
    assert ceiling() == 6 * mib  # 4 MiB + 5 MiB of free swap, but RAM and swap capped at 6
    (v1 / "memory.memsw.limit_in_bytes").write_text(f"{20 * mib}\n")
    assert ceiling() == 9 * mib  # the swap that is free caps it here
    membership.write_text("garbage\n4:memory:/slurm/job_8\n")  # an odd line is skipped
    assert ceiling() == 9 * mib
    membership.write_text("0::/\n")  # the root cgroup: no limit
    assert ceiling() is None
    assert memory._cgroup_ceiling(0, tmp_path / "cg", tmp_path / "absent") is None


def test_shares_of_ram_are_taken_of_the_cgroup_limit(monkeypatch) -> None:
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(memory, "_cgroup_ceiling", lambda swap_free: None)
    assert memory.physical_memory() == machine
    seen = []
    monkeypatch.setattr(
        memory, "_cgroup_ceiling", lambda swap_free: seen.append(swap_free) or 2**20
    )
    assert memory.physical_memory() == 2**20 and seen == [0]  # RAM only: no swap in a share


def test_a_step_beyond_this_machine_is_refused_with_the_settings_to_lower() -> None:
    # this machine's real free memory: 10^6 images of 3x512x512 floats are 3 TB on their own
    with pytest.raises(ConfigError, match=r"data\.batch_size=1000000: .*lower data\.batch_size"):
        check_step_fits(small_net()[:2], (3, 512, 512), 10**6, torch.device("cpu"))
    check_step_fits(small_net(), (3, 8, 8), 2, torch.device("cpu"))  # a small step passes


def test_processes_on_one_machine_share_its_memory(monkeypatch) -> None:
    need = step_lower_bound(small_net(), (3, 8, 8), 2)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 3 * need)
    check_step_fits(small_net(), (3, 8, 8), 2, torch.device("cpu"), processes=3)
    with pytest.raises(ConfigError, match="for 4 processes"):
        check_step_fits(small_net(), (3, 8, 8), 2, torch.device("cpu"), processes=4)
    check_step_fits(small_net(), (3, 8, 8), 2, torch.device("cpu"), processes=6, half=True)


def test_train_refuses_before_the_first_batch(tiny_cfg, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)
    cfg = tiny_cfg()
    with pytest.raises(ConfigError, match=r"model\.input_size=64, data\.batch_size=16"):
        train(cfg)
    assert not list(Path(cfg.paths.output_dir).glob("checkpoints/*.ckpt"))


def test_the_command_line_gives_one_line(tmp_path: Path) -> None:
    result = run_train(
        *TINY_BOARDS, f"paths.data_dir={tmp_path}", "data.batch_size=1000000", tmp=tmp_path
    )
    assert_clean_error(result, "data.batch_size=1000000", "one training step needs at least")
    assert result.returncode == 2

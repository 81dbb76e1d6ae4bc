"""The memory check reads the GPU's own free memory; skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from tests.utils.test_memory import small_net
from trainer.errors import ConfigError
from trainer.utils.memory import available_bytes, check_step_fits

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_free_gpu_memory_is_cudas_own_figure() -> None:
    device = torch.device("cuda", 0)
    free, total = torch.cuda.mem_get_info(device)
    assert 0 < available_bytes(device) <= total
    assert abs(available_bytes(device) - free) < 2**30  # other processes may allocate between


def test_a_step_beyond_the_gpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="of GPU memory is free for it"):
        check_step_fits(small_net()[:2], (3, 512, 512), 10**6, torch.device("cuda", 0))

"""trainer: Hydra configs compose data, timm backbones and training settings into Lightning runs
that fine-tune image models, and measure, explain, gate and export what comes out.

The packages, in the order data flows (each imports only those before it):
``utils``, ``data`` (with ``data/pcb``, ``data/checks``), ``models``, ``metrics``, ``callbacks``,
``checkpoint``, ``evaluation``, ``history``, ``explain``, ``export`` (with ``export/runtime``),
``serve``, and the ``tasks`` that the entry points run. README, "How the code is laid out".
"""

__all__: list[str] = []

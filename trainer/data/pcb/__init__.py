"""Procedural circuit boards with labelled defects: ``PCBSpec`` says what to generate,
``generate_dataset`` writes the set (its folder named by the spec's digest).
"""

from trainer._exports import lazy

_EXPORTS = {
    "PCBSpec": "generator",
    "generate_dataset": "generator",
    "CLASSES": "generator",
    "SPLITS": "generator",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

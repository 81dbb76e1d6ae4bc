"""Lightning callbacks, one module each (shared helpers in ``common``); every one is a file of
``configs/callbacks/`` and can be switched off with ``callbacks.<name>=null``.
"""

from trainer._exports import lazy

_EXPORTS = {
    "AnomalyMaps": "anomaly_maps",
    "BackboneFreeze": "backbone_freeze",
    "EmbeddingProjector": "embedding_projector",
    "ExplainImages": "explain_images",
    "SyncFreeRichProgressBar": "progress_bar",
    "RngState": "rng_state",
    "SampleImages": "sample_images",
    "StopAtTarget": "stop_at_target",
    "WeightHistograms": "weight_histograms",
    "WorstMistakes": "worst_mistakes",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

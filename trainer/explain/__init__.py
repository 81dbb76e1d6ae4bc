"""See what the network sees: feature maps per stage, Grad-CAM, worst mistakes, embeddings.

Modules, one concept each:
    feature_maps    the activations of each backbone stage (timm's ``forward_intermediates``)
    gradcam         Grad-CAM heatmaps of the predicted class (pytorch-grad-cam)
    render          labelled PNG-ready grids: feature maps, heatmap overlays, summaries
    report          the picture of one explained image (board, Grad-CAM, feature maps)
    mistakes        the highest-confidence errors, and ``write_worst_mistakes`` for eval
    projector       penultimate features for TensorBoard's embedding projector
    pointing_game   does the Grad-CAM maximum fall inside the defect's box?

The callbacks in ``trainer/callbacks/`` and ``trainer.tasks.explain`` are built from these.
"""

from trainer._exports import lazy

_EXPORTS = {
    "stage_features": "feature_maps",
    "grad_cam": "gradcam",
    "explain_images": "report",
    "write_worst_mistakes": "mistakes",
    "boxed_images": "pointing_game",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

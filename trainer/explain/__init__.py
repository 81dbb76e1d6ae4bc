"""See what the network sees: feature maps per stage, Grad-CAM, worst mistakes, embeddings.

Modules, one concept each:
    loading         a checkpoint back into an ImageClassifier, and images at its input size
    feature_maps    the activations of each backbone stage (timm's ``forward_intermediates``)
    gradcam         Grad-CAM heatmaps of the predicted class (pytorch-grad-cam)
    render          labelled PNG-ready grids: feature maps, heatmap overlays, summaries
    worst_mistakes  the highest-confidence errors, and ``write_worst_mistakes`` for eval
    projector       penultimate features for TensorBoard's embedding projector
    pointing_game   does the Grad-CAM maximum fall inside the defect's box?

The callbacks in ``trainer/callbacks/`` and ``scripts/explain.py`` are built from these.
"""

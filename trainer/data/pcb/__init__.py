"""Procedural circuit boards with labelled defects, since no dataset can be downloaded.

``PCBSpec`` says what to generate (``spec``: settings, classes, counts, digest and folder name);
``generate_dataset`` writes the set (``write``). A board is a scene (``scene``: components at a
jittered fixed layout, traces), one defect (``defects``: missing, misplaced, solder bridge) and a
rendering under camera nuisance (``render``: pose, lighting, colour cast, blur, noise), of one
of the board designs of ``products``. Each module imports only those before it (products <- spec
<- scene <- defects <- render <- write).

    from trainer.data.pcb import PCBSpec, generate_dataset, generated_folder

    spec = PCBSpec(image_size=64, num_train=48, num_val=16, num_test=16)
    root = generate_dataset(generated_folder("data/pcb", spec), spec)
"""

from trainer._exports import lazy

_EXPORTS = {
    "PCBSpec": "spec",
    "CLASSES": "spec",
    "GENERATOR_VERSION": "spec",
    "class_counts": "spec",
    "smallest_split": "spec",
    "generated_folder": "spec",
    "PRODUCTS": "products",
    "render_board": "render",
    "generate_dataset": "write",
    "SPLITS": "write",  # trainer.data.image_folder.SPLITS, the one definition
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

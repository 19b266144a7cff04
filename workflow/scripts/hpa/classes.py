"""The 28 HPA protein-localization classes and the four stain channels."""

from __future__ import annotations

CHANNELS = ("red", "green", "blue", "yellow")


CLASS_NAMES = (
    "Nucleoplasm",
    "Nuclear membrane",
    "Nucleoli",
    "Nucleoli fibrillar center",
    "Nuclear speckles",
    "Nuclear bodies",
    "Endoplasmic reticulum",
    "Golgi apparatus",
    "Peroxisomes",
    "Endosomes",
    "Lysosomes",
    "Intermediate filaments",
    "Actin filaments",
    "Focal adhesion sites",
    "Microtubules",
    "Microtubule ends",
    "Cytokinetic bridge",
    "Mitotic spindle",
    "Microtubule organizing center",
    "Centrosome",
    "Lipid droplets",
    "Plasma membrane",
    "Cell junctions",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Cytoplasmic bodies",
    "Rods & rings",
)


NUM_CLASSES = len(CLASS_NAMES)


# Hand-made class groups for ``combine: groups`` ensembles, beside the data-driven
# groups of the co-occurrence stage. "ntu": the NTU team's seed report ensembled
# per group of four; its exact lists are not reproduced here, so this preset is
# the four-compartment split such a hand-made grouping follows: nucleus,
# cytoplasm (organelles, vesicles, cytosol), cytoskeleton and cell division,
# cell periphery. Every class is in exactly one group (a test checks).
GROUP_PRESETS = {
    "ntu": (
        (0, 1, 2, 3, 4, 5),
        (6, 7, 8, 9, 10, 20, 23, 24, 25, 26, 27),
        (11, 12, 14, 15, 16, 17, 18, 19),
        (13, 21, 22),
    ),
}


def class_names(classes) -> str:
    """The names of class numbers, "; "-separated (names hold spaces and "&", never ";")."""
    return "; ".join(CLASS_NAMES[int(k)] for k in classes)

"""Class groups for ``combine: groups`` ensembles: the co-occurrence stage's, a preset, or lists.

Checked twice with the same code: when the DAG is built (``hpa.config.checks``, against the
config's vocabulary) and when blend reads them (against results/data/vocabulary.json).
Pure Python, so the DAG-time check imports no numpy (nor pandas, which hpa.classes brings:
it is imported where a preset is looked up).
"""

from __future__ import annotations

import yaml

COOCCURRENCE = "cooccurrence"


# Hand-made class groups for ``combine: groups`` ensembles, beside the data-driven
# groups of the co-occurrence stage. "ntu": the NTU team's seed report ensembled
# per group of four; its exact lists are not reproduced here, so this preset is
# the four-compartment split such a hand-made grouping follows: nucleus,
# cytoplasm (organelles, vesicles, cytosol), cytoskeleton and cell division,
# cell periphery. Every class is in exactly one group (a test checks). The
# presets are lists of the HPA 28's indices: another vocabulary is refused by name.
GROUP_PRESETS = {
    "ntu": (
        (0, 1, 2, 3, 4, 5),
        (6, 7, 8, 9, 10, 20, 23, 24, 25, 26, 27),
        (11, 12, 14, 15, 16, 17, 18, 19),
        (13, 21, 22),
    ),
}


def check_partition(groups, n_classes: int, where: str = "groups") -> list[list[int]]:
    """``groups`` as lists of ints, refused unless they put each of the ``n_classes`` classes in exactly one group."""
    groups = [[int(k) for k in g] for g in groups]
    listed = sorted(k for g in groups for k in g)
    if listed != list(range(n_classes)):
        missing = sorted(set(range(n_classes)) - set(listed))
        twice = sorted({k for k in listed if listed.count(k) > 1})
        outside = sorted(set(listed) - set(range(n_classes)))
        raise ValueError(f"{where} must put each of the {n_classes} classes (0..{n_classes - 1}) in exactly one "
                         f"group; missing {missing}, repeated {twice}, out of range {outside}")
    return groups


def preset_groups(name: str, vocab, where: str = "groups") -> list[list[int]]:
    """A hand-made preset of ``GROUP_PRESETS``: lists of the HPA 28's indices, so refused
    for any other vocabulary rather than grouping unrelated classes by number."""

    if name not in GROUP_PRESETS:
        raise ValueError(f"{where}: {name!r} is not a preset; choose {COOCCURRENCE}, {sorted(GROUP_PRESETS)}, "
                         f"or give lists of class numbers")
    if not vocab.is_hpa:
        raise ValueError(f"{where}: the preset {name!r} groups the 2018 HPA task's 28 classes by number, and this "
                         f"dataset's {vocab.n_classes} classes (labels:) are others; use {COOCCURRENCE} (groups "
                         f"from the labels) or lists of class numbers 0..{vocab.n_classes - 1}")
    return [list(g) for g in GROUP_PRESETS[name]]


def resolve_groups(spec, vocab, groups_file=None, where: str = "groups") -> list[list[int]]:
    """The groups of ``spec`` (``cooccurrence``: read from the co-occurrence stage's ``groups_file``;
    a preset name; or lists of class numbers), checked to partition ``vocab``'s classes."""
    if groups_file:
        with open(groups_file) as fh:
            groups = [g["classes"] for g in yaml.safe_load(fh)["groups"]]
    elif isinstance(spec, str):
        groups = preset_groups(spec, vocab, where)
    else:
        groups = spec
    return check_partition(groups, vocab.n_classes, where)


def check_spec(spec, vocab, where: str = "groups") -> None:
    """What can be checked of a groups setting before the co-occurrence stage has run (DAG time)."""
    if spec != COOCCURRENCE:
        resolve_groups(spec, vocab, where=where)

"""The label space and the stain channels of a dataset: the 2018 HPA task's by default.

Everything after ingest reads them from one file, ``results/data/vocabulary.json``
(written by the ``vocabulary`` rule from the config's ``labels:`` and ``channels:``),
so that a lab's ten classes and three stains flow through the same stages as the
atlas's 28 classes and four stains. Inside the pipeline a label set is always the
canonical ``Target`` string: ascending 0-based class indices, space-separated
("0 16"); only ingest and the test-label reader see the dataset's own spelling
(names or indices, any separator), through :meth:`Vocabulary.parse`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from hpa.files import InputError, write_json

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

# The pretrained RGB filters' owners among the HPA stains: microtubules red, protein green,
# nucleus blue; yellow (the ER) starts as the mean of the three, as any unmapped channel does.
HPA_RGB = {"red": "red", "green": "green", "blue": "blue"}


# Names become column headers, figure labels and file names of per-class outputs:
# a separator inside a name would split it, a newline would break a CSV row.
_BAD_NAME = re.compile(r"[\n\r\t;|]|^\s|\s$")
# An Id ends up in file names (per-image outputs, masks, panels).
_BAD_ID = re.compile(r"[/\\\x00-\x1f]|^\.|^$")


def join_names(classes, names) -> str:
    """The ``names`` of class indices, "; "-separated: every table that spells classes out does it
    this way (a vocabulary's names never hold ";", so the list splits back)."""
    return "; ".join(names[int(k)] for k in classes)


def id_problem(image_id: str) -> str:
    """Why an Id cannot name files ("" when it can): no path separator, control character or leading dot."""
    if _BAD_ID.search(str(image_id)):
        return (f"Id {image_id!r} cannot name a file (it is empty, starts with '.', or holds '/', '\\' "
                "or a control character); rename the image")
    return ""


@dataclass(frozen=True)
class Vocabulary:
    """A dataset's class names (index = position), its channel names and their pretrained-RGB owners.

    ``separator`` is how the dataset's own Target cells separate classes (" " for the 2018
    task, "|" for the 2021 one); ``rgb`` maps "red", "green" and "blue" (the pretrained
    stem's filters) to channel names; channels not mapped start from the filters' mean.
    """

    classes: tuple[str, ...] = CLASS_NAMES
    channels: tuple[str, ...] = CHANNELS
    rgb: dict = field(default_factory=lambda: dict(HPA_RGB))
    separator: str = " "

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        for kind, names in (("labels", self.classes), ("channels", self.channels)):
            if not names:
                raise ValueError(f"{kind}.names is empty; give at least one")
            seen = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{kind}.names lists {name!r} twice; names must be unique")
                if _BAD_NAME.search(name) or not name:
                    raise ValueError(f"{kind}.names: {name!r} is empty, starts or ends with a space, or holds "
                                     "a tab, newline, ';' or '|'; rename it")
                seen.add(name)
        for bad in (c for c in self.channels if "_" in c or "/" in c or c.startswith(".")):
            raise ValueError(f"channels.names: {bad!r} holds '_' or '/' or starts with '.'; files are "
                             f"named {{Id}}_{{channel}}.png, so rename the channel (e.g. {bad.replace('_', '-')!r})")
        unknown = {k: v for k, v in self.rgb.items() if k not in ("red", "green", "blue") or v not in self.channels}
        if unknown:
            raise ValueError(f"channels.rgb: {unknown} is not a map from red/green/blue to one of the "
                             f"channels {list(self.channels)}; fix the names")
        if len(self.separator) != 1 or self.separator.isalnum():
            raise ValueError(f"labels.separator {self.separator!r}: give one character such as ' ', '|' or ';'")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def is_hpa(self) -> bool:
        """The 2018 task's 28 classes in their order (what the presets and the atlas's mirror assume)."""
        return self.classes == CLASS_NAMES

    def rgb_source(self) -> list[int | None]:
        """For each channel, the pretrained RGB filter (0, 1, 2) it starts from, or None for the filters' mean."""
        owner = {name: "rgb".index(colour[0]) for colour, name in self.rgb.items()}
        return [owner.get(c) for c in self.channels]

    def parse(self, text, *, where: str, allow_empty: bool = False) -> list[int]:
        """A dataset's Target cell ("Nucleoli|0", "16 0") as ascending class indices.

        Entries are class names or 0-based indices, split by ``separator`` (a space
        separator also splits on runs of blanks). ``where`` names the file and row for the error.
        """
        raw = str(text)
        tokens = raw.split() if self.separator == " " else [t.strip() for t in raw.split(self.separator)]
        tokens = [t for t in tokens if t]
        if not tokens:
            if allow_empty:
                return []
            raise InputError(f"{where}: empty Target; every labelled image needs at least one class")
        index = {name: k for k, name in enumerate(self.classes)}
        labels = []
        for token in tokens:
            if token in index:
                labels.append(index[token])
            elif token.isdigit() and int(token) < self.n_classes:
                labels.append(int(token))
            else:
                sep = "a space" if self.separator == " " else repr(self.separator)
                raise InputError(
                    f"{where}: Target {raw!r}: {token!r} is neither a class name nor an index 0..{self.n_classes - 1} "
                    f"(classes separated by {sep}; labels.names or labels.file lists the {self.n_classes} classes)")
        if len(set(labels)) != len(labels):
            raise InputError(f"{where}: Target {raw!r} repeats a class; list each class once")
        return sorted(labels)

    def names_of(self, classes) -> str:
        """The names of class indices, "; "-separated (``join_names``)."""
        return join_names(classes, self.classes)

    def to_json(self) -> dict:
        return {"classes": list(self.classes), "channels": list(self.channels), "rgb": dict(self.rgb),
                "separator": self.separator}

    def write(self, path) -> None:
        write_json(self.to_json(), path)

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        return cls(tuple(data["classes"]), tuple(data["channels"]), dict(data["rgb"]), data.get("separator", " "))

    @classmethod
    def read(cls, path) -> Vocabulary:
        """The vocabulary file the ``vocabulary`` rule wrote (``results/data/vocabulary.json``)."""
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def from_config(cls, config: dict, base=".") -> Vocabulary:
        """From the config's ``labels:`` and ``channels:`` (defaults: the 2018 task's 28 classes and 4 stains).

        ``labels.file`` is a text file with one class name per line (index = line number,
        blank lines and ``#`` comments skipped), relative to ``base``.
        """
        labels = config.get("labels") or {}
        channels = config.get("channels") or {}
        if labels.get("names") and labels.get("file"):
            raise ValueError("labels: give names or file, not both")
        if labels.get("file"):
            path = Path(base) / labels["file"]
            if not path.is_file():
                raise InputError(f"labels.file: {path} not found; give a text file with one class name per line")
            names = [line.strip() for line in path.read_text().splitlines()]
            names = tuple(n for n in names if n and not n.startswith("#"))
        else:
            names = tuple(labels.get("names") or CLASS_NAMES)
        channel_names = tuple(channels.get("names") or CHANNELS)
        rgb = channels.get("rgb")
        if rgb is None:  # the HPA mapping where the channels carry its names, else none
            rgb = {k: v for k, v in HPA_RGB.items() if v in channel_names}
        return cls(names, channel_names, dict(rgb), labels.get("separator", " "))


HPA = Vocabulary()


def class_names(classes) -> str:
    """The names of HPA class numbers, "; "-separated (names hold spaces and "&", never ";")."""
    return HPA.names_of(classes)

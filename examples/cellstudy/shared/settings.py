"""A study's settings: one frozen, versioned object, written to each run's recipe.json.

Every number that shapes a run is a field with its default (the recipe fixed
in advance). ``Settings.to_recipe()`` is what ``recipe.json`` and
``results.json`` hold; ``Settings.from_recipe()`` reads one back, whichever
version wrote it: the recipes of older versions are brought up to date by
:attr:`Settings.MIGRATIONS`, one function per version, instead of guesses
spread over the code.

:class:`Settings` holds what every study shares; each study's own settings
subclass it beside its command line: :class:`cellstudy.bloodcells.command.BloodCellSettings`,
:class:`cellstudy.pbc.command.PBCSettings`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple

__all__ = ["Settings", "SettingsError", "is_zoom_range"]


def is_zoom_range(low, high) -> bool:
    """Whether ``(low, high)`` can be the studies' zoom range: finite, ``0 < low <= 1 <= high``."""
    return math.isfinite(low) and math.isfinite(high) and 0 < low <= 1 <= high


class SettingsError(ValueError):
    """Settings that cannot work, or that differ from a run on disk that is to be resumed."""


@dataclass(frozen=True)
class Settings:
    """What every study run shares: where, how long, how many seeds."""

    VERSION: ClassVar[int] = 2
    #: Fields that change what a model learns: a run resumes only with the same ones.
    TRAINING: ClassVar[Tuple[str, ...]] = ("batch_size", "lr", "class_weights", "max_per_class",
                                           "colour_jitter", "augment", "zoom")
    #: version -> function(recipe dict) -> recipe dict of the next version.
    MIGRATIONS: ClassVar[Dict[int, object]] = {}
    #: Whole-number fields that must be >= 1 (the others must be >= 0).
    POSITIVE: ClassVar[Tuple[str, ...]] = ("epochs", "batch_size", "seeds")
    #: Text fields and the values they may take.
    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "class_weights": ("none", "balanced"), "tta": ("symmetries", "none"),
        "backend": ("numba", "numpy"), "colour_norm": ("none", "image"),
        "augment": ("standard", "lab", "lab+camera")}

    data: Optional[str] = None
    out: str = "runs/study"
    cache_dir: Optional[str] = None
    max_per_class: Optional[int] = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    class_weights: str = "none"
    colour_jitter: float = 0.0
    augment: str = "standard"
    #: --augment lab's zoom factors (low, high), drawn uniformly; low <= 1 <= high.
    zoom: Tuple[float, float] = (0.85, 1.18)
    tta: str = "symmetries"
    seeds: int = 1
    seed: Optional[int] = None
    resume: bool = False
    skip_test: bool = False
    backend: str = "numba"
    no_plots: bool = False
    quiet: bool = False

    @property
    def seed_list(self):
        """The seeds to train: ``[seed]``, or ``0 .. seeds - 1``."""
        return [self.seed] if self.seed is not None else list(range(self.seeds))

    def training_settings(self) -> dict:
        """The :attr:`TRAINING` fields, as a recipe stores them."""
        recipe = self.to_recipe()
        return {key: recipe[key] for key in self.TRAINING}

    def to_recipe(self) -> dict:
        """Every field (tuples as lists) and ``settings_version``: JSON-ready."""
        recipe = {key: list(value) if isinstance(value, tuple) else value
                  for key, value in dataclasses.asdict(self).items()}
        recipe["settings_version"] = self.VERSION
        return recipe

    @classmethod
    def from_recipe(cls, recipe: dict) -> "Settings":
        """The settings a recipe.json (of any version) describes.

        Raises
        ------
        SettingsError
            ``recipe`` is not a JSON object, its ``settings_version`` is not one
            this code reads (1 to :attr:`VERSION`), or a setting has a value of
            the wrong type or out of its range; the message names it.
        """
        if not isinstance(recipe, dict):
            raise SettingsError(f"the recipe is a JSON {_json_kind(recipe)}, not an object of "
                                f"settings")
        recipe = dict(recipe)
        version = recipe.get("settings_version", 1)
        if type(version) is not int or not 1 <= version <= cls.VERSION:
            raise SettingsError(f"the recipe has settings_version {version!r}; this code reads "
                                f"versions 1 to {cls.VERSION} (was it written by a newer "
                                f"version of the study?)")
        while version < cls.VERSION:
            recipe = cls.MIGRATIONS.get(version, dict)(recipe)
            version += 1
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in recipe.items() if key in names}
        for f in dataclasses.fields(cls):
            if f.name in values:
                values[f.name] = cls._checked(f, values[f.name])
        return cls(**values)

    @classmethod
    def _checked(cls, f, value):
        """``value`` of the recipe for the field ``f``, checked (tuples for lists)."""
        kind = str(f.type)
        optional = kind.startswith("Optional[")
        kind = kind[len("Optional["):-1] if optional else kind
        if value is None and optional:
            return None
        expected = _EXPECTED.get(kind, kind)
        if kind == "int":
            expected += " >= 1" if f.name in cls.POSITIVE else " >= 0"
        wrong = SettingsError(f"the recipe's {f.name} is {value!r}; expected {expected}"
                              + (" or null" if optional else ""))
        if kind == "Tuple[float, float]":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(type(v) in (int, float) for v in value)
                    or not is_zoom_range(*value)):
                raise wrong
            return tuple(float(v) for v in value)
        if kind.startswith("Tuple["):
            item = int if "int" in kind else str
            if not isinstance(value, (list, tuple)) or not all(
                    type(v) is item and (item is str or v >= 1) for v in value):
                raise wrong
            return tuple(value)
        if kind == "int":
            if type(value) is not int or value < (1 if f.name in cls.POSITIVE else 0):
                raise wrong
        elif kind == "float":
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise wrong
        elif kind == "bool":
            if type(value) is not bool:
                raise wrong
        elif kind == "str":
            if type(value) is not str or value not in cls.CHOICES.get(f.name, (value,)):
                raise SettingsError(f"the recipe's {f.name} is {value!r}; expected one of "
                                    f"{list(cls.CHOICES[f.name])}" if f.name in cls.CHOICES
                                    else str(wrong))
        return value

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


_EXPECTED = {"int": "a whole number", "float": "a finite number >= 0", "bool": "true or false",
             "str": "a text", "Tuple[int, ...]": "a list of whole numbers >= 1",
             "Tuple[str, ...]": "a list of texts",
             "Tuple[float, float]": "two numbers [low, high] with 0 < low <= 1 <= high"}


def _json_kind(value):
    """How JSON calls the type of ``value`` (list, number, ...)."""
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)

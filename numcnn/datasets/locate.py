"""Find a dataset on disk: an argument, else an environment variable, else default places."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Sequence

from ..errors import DataNotFoundError

__all__ = ["locate_dataset"]


def locate_dataset(path, env_var: str, defaults: Sequence[Path], holds: Callable[[Path], bool],
                   what: str, how_to_get: str) -> Path:
    """The folder that holds a dataset, as an absolute path.

    Parameters
    ----------
    path : str or Path or None
        The folder the user named (an argument or ``--data``). If given and it
        does not hold the data, that is an error: no other place is tried.
    env_var : str
        Environment variable consulted when ``path`` is None (same rule).
    defaults : sequence of Path
        Places tried in order when neither is given.
    holds : callable
        ``holds(folder) -> bool``: does the folder hold the dataset?
    what : str
        The dataset's name, for the messages.
    how_to_get : str
        Where to download it and how to point at it, for the messages.

    Raises
    ------
    DataNotFoundError
        With the places tried and ``how_to_get``.
    """
    named = [("the path argument (--data)", path)] if path is not None else []
    if not named and os.environ.get(env_var):
        named = [(f"the environment variable {env_var}", os.environ[env_var])]
    if named:
        how, place = named[0]
        place = Path(place).expanduser()
        if not holds(place):
            raise DataNotFoundError(f"{how} points at {place}, which does not hold the {what}."
                                    f"\n{how_to_get}\nPlace tried:\n      {how}: {place}")
        return place.resolve()
    tried: List[str] = []
    for place in defaults:
        if holds(place):
            return place.resolve()
        tried.append(f"      default place: {place.resolve()}")
    raise DataNotFoundError(f"{what} not found: no path given, {env_var} is not set, and no "
                            f"default place holds them.\n{how_to_get}\nPlaces tried:\n"
                            + "\n".join(tried))

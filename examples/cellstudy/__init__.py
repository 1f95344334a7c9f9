"""The machinery of the cell-classification studies in ``examples/``, one job per module.

``examples/bloodcells.py`` and ``examples/pbc.py`` read as stories: data,
split, model, ``fit``, TEST once, reports. What they share lives here:

- :mod:`cellstudy.settings`: a study's settings, frozen and versioned (what a run's recipe.json holds);
- :mod:`cellstudy.cli`: the command line, and the table of exit statuses;
- :mod:`cellstudy.runs`: the output folder: seed folders, resume (only what fits), files written atomically;
- :mod:`cellstudy.seedfiles`: the files beside a model (recipe.json, mean_image.npy), checked against it;
- :mod:`cellstudy.datacheck`: every file hashed: the data's identity, and the data checked against itself;
- :mod:`cellstudy.splits`: validation splits, by images or by whole original cells;
- :mod:`cellstudy.views`: what the network sees at evaluation (centre crop, 8 symmetric views);
- :mod:`cellstudy.reports`: per-split reports, intervals, results.json and summary.txt;
- :mod:`cellstudy.predict`, :mod:`cellstudy.explain`: ``--predict`` and ``--explain``;
- blood-cell specific: :mod:`cellstudy.stain` (the crop around the stained cell),
  :mod:`cellstudy.duplicates` and :mod:`cellstudy.cells` (which images are copies
  of one original cell), :mod:`cellstudy.labels_csv` (the archive's raw label list).
"""

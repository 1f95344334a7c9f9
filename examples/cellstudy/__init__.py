"""The machinery of the cell-classification studies in ``examples/``, in one folder per owner.

``examples/bloodcells.py``, ``examples/pbc.py`` and ``examples/transfer.py``
read as stories: data, split, model, ``fit``, TEST once, reports. What they
share, and what each needs besides, lives here:

- :mod:`cellstudy.shared`, what every study uses:

  - :mod:`~cellstudy.shared.settings`: a study's settings, frozen and versioned
    (what a run's recipe.json holds);
  - :mod:`~cellstudy.shared.command`: the shared flags and their checks, the
    table of exit statuses, the guard that turns failures into them;
  - :mod:`~cellstudy.shared.runs`: the output folder (seed folders, resume only
    what fits, files written atomically) and the seeds trained one after another;
  - :mod:`~cellstudy.shared.seedfiles`: the files beside a model (recipe.json,
    mean_image.npy), checked against it;
  - :mod:`~cellstudy.shared.datacheck`: every file hashed: the data's identity,
    and the data checked against itself;
  - :mod:`~cellstudy.shared.evaluation`: what the network is shown (colour
    normalisation, validation splits by images or whole cells, the centre crop
    and 8 symmetric views) and a trained seed evaluated;
  - :mod:`~cellstudy.shared.reports`: per-split reports, intervals,
    results.json and summary.txt;
  - :mod:`~cellstudy.shared.prediction`: ``--predict`` and ``--explain``.

- :mod:`cellstudy.bloodcells`, the blood-cell study's own:

  - :mod:`~cellstudy.bloodcells.command`: its settings, flags, class-count
    tables, ``--predict`` and ``--explain``;
  - :mod:`~cellstudy.bloodcells.stain`: the crop around the stained cell;
  - :mod:`~cellstudy.bloodcells.duplicates` and :mod:`~cellstudy.bloodcells.cells`:
    which images are copies of one original cell;
  - :mod:`~cellstudy.bloodcells.labels_csv`: the archive's raw label list.

- :mod:`cellstudy.pbc`, the PBC study's own: :mod:`~cellstudy.pbc.command`,
  its settings, flags, class-count table and ``--predict``.

- :mod:`cellstudy.crosslab`, what the cross-laboratory test
  (``examples/transfer.py``) alone uses: :mod:`~cellstudy.crosslab.scale`,
  the ruler (a typical lymphocyte's diameter) and the transforms that bring one
  laboratory's cells to another's scale.

Importing this package, or :mod:`cellstudy.shared.command`, loads neither numpy
nor numcnn: a script installs its Ctrl-C handler first.
"""

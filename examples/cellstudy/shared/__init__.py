"""What every cell study uses: settings, command line, runs, model files, data checks,
evaluation, reports, prediction (the list: :mod:`cellstudy`)."""

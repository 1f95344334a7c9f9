"""Build numcnn's API reference from its docstrings, with pdoc (in the ``dev`` extra).

Run from the repository root:

    python docs/api.py                 serve it at http://localhost:8080 and open a browser
    python docs/api.py -o DIR          write it as HTML into DIR (then open DIR/index.html)

Any other option of pdoc passes through (``-p PORT``, ``-n`` for no browser,
``--help``). This is ``python -m pdoc --docformat numpy --math`` with every module of
numcnn named, and a template (``docs/pdoc/``) whose navigation lists every
submodule of a package. Both matter: pdoc follows a package's ``__all__``, and
``numcnn.__all__`` names only the modules that ``import numcnn`` loads, so
``python -m pdoc numcnn`` alone documents those and leaves out
``numcnn.data``, ``numcnn.datasets``, ``numcnn.training``, ``numcnn.saving``, ...
"""
import pkgutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

#: The options this script gives pdoc before the caller's.
PDOC_OPTIONS = ["--docformat", "numpy", "--math", "--template-directory", str(DOCS / "pdoc")]


def all_modules():
    """numcnn and every module under it, by name, in the order ``pkgutil`` finds them."""
    import numcnn
    return ["numcnn"] + [info.name for info in pkgutil.walk_packages(numcnn.__path__, "numcnn.")]


def module_specs():
    """The module names to hand pdoc so that it documents every module once.

    ``numcnn`` first; then each module that pdoc would not reach from the names
    before it (by the packages' ``__all__``). Naming a module twice would make
    pdoc warn about a duplicate.
    """
    from pdoc import extract
    specs, reached = [], set()
    for name in all_modules():
        if name not in reached:
            specs.append(name)
            reached.update(extract.walk_specs([name]))
    return specs


def render(output_directory):
    """Write the whole reference as HTML into ``output_directory``; return it as a Path."""
    import pdoc
    import pdoc.render
    pdoc.render.configure(docformat="numpy", math=True, template_directory=DOCS / "pdoc")
    output_directory = Path(output_directory)
    pdoc.pdoc(*module_specs(), output_directory=output_directory)
    return output_directory


def main(argv=None):
    """pdoc's command line, with every module of numcnn and the options above."""
    from pdoc.__main__ import cli
    cli(PDOC_OPTIONS + module_specs() + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()

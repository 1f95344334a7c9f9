"""Make ``import cellstudy`` work in the examples' tests, as it does for the scripts."""
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
for folder in (EXAMPLES, EXAMPLES.parent):          # cellstudy, and the numcnn checkout
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

"""``python -m numcnn info``: what numcnn sees of this machine (see :mod:`numcnn.info`)."""
import sys

from .info import main

if __name__ == "__main__":
    sys.exit(main())

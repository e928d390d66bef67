"""The bundle's `postroom` executable: PyInstaller freezes this script with engine/ and desktop/ beside it.

It is the same `engine.cli:main` that `pip install` wires up as a console script, so the bundle, a wheel and
a source checkout all parse the same command line.
"""

import multiprocessing
import sys

from engine.cli import main

if __name__ == "__main__":
    # A frozen program that ever starts a worker process must let it run the worker, not the CLI again.
    multiprocessing.freeze_support()
    sys.exit(main())

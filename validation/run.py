#!/usr/bin/env python
"""``python validation/run.py ARGS`` is ``momentssn validate ARGS`` (see ``--help``)."""

import sys

from momentssn.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate"] + sys.argv[1:]))

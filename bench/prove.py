"""Run every formal proof, the slow ones included, and print the table (``intformer prove
--slow``): property, mode, depth, result, time."""

import sys

from intformer.cli import main

if __name__ == "__main__":
    sys.exit(main(["prove", "--slow", *sys.argv[1:]]))

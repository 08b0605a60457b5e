# conftest.py: lets the tests import the harness; keeps bytecode out of the tree.
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# conftest.py: lets the tests import the harness, keeps bytecode out of the
# tree, and in the sanitized run fails any test that made a sanitizer report.
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import pytest  # noqa: E402

from harness import SANITIZER_LOGS  # noqa: E402


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """In the sanitized run, a test during which the shim made any ASan or
    UBSan report fails with the report."""
    if not SANITIZER_LOGS:
        yield
        return
    before = set(os.listdir(SANITIZER_LOGS))
    yield
    new = sorted(set(os.listdir(SANITIZER_LOGS)) - before)
    reports = []
    for name in new:
        with open(os.path.join(SANITIZER_LOGS, name), errors="replace") as f:
            reports.append(f.read())
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)

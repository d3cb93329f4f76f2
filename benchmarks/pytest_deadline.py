"""A pytest plugin that ends a session at a deadline, between two tests, so that its report is still written.

    DALI_MIXUP_TEST_DEADLINE=<a time.time() to stop at> pytest -p benchmarks.pytest_deadline ...

``benchmarks.gpu_report --budget`` gives its test step a share of the budget this way: the tests that
ran are in the JUnit file, and the session says it was stopped (``STOPPED``).
"""

import os
import time

STOPPED = "the report's time for the tests is spent"
_session = None


def pytest_sessionstart(session):
    global _session
    _session = session


def pytest_runtest_logfinish(nodeid, location):
    deadline = os.environ.get("DALI_MIXUP_TEST_DEADLINE")
    if deadline and _session is not None and time.time() >= float(deadline):
        _session.shouldstop = STOPPED

"""The mutation list (tests/mutations.py) still applies to the code: every text it breaks is there."""

import os

import pytest

from mutations import MUTATIONS, ROOT


@pytest.mark.parametrize("promise, path, original, mutated, tests", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_every_mutation_still_applies(promise, path, original, mutated, tests):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    assert original in text, f"{path} no longer holds the text this check's mutation breaks: update tests/mutations.py"
    assert original != mutated
    assert all(os.path.exists(os.path.join(ROOT, arg)) for arg in tests if arg.startswith("tests/"))

"""Shared test helpers."""

import pytest


def _refused(result, *fragments):
    """Exit 2, a message naming ``fragments``, and no traceback (a CliRunner result)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


@pytest.fixture
def refused():
    """The check that a CLI call was refused cleanly: ``refused(result, "--option=...")``."""
    return _refused

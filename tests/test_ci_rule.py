"""The CI rule itself: an integration test that skips fails under CI=true, and only then."""

from __future__ import annotations

import pytest

SKIPPING = """
import pytest

@pytest.mark.integration
def test_needs_engine():
    pytest.skip("no engine here")

def test_unit_skip():
    pytest.skip("not an integration test")
"""


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 1, 1), ("", 0, 2)])
def test_integration_skips_fail_only_under_ci(
    pytester: pytest.Pytester, monkeypatch, ci, failed, skipped
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_inprocess("-p", "tests.ci_rule")
    result.assert_outcomes(failed=failed, skipped=skipped)

"""Suite-wide set-up only: pytest rewrites the asserts of the shared helper modules of the split
test files, so that a failing assert in a helper reports like one in the test itself. The helpers
and their fixtures live in those modules (test modules load the fixtures with ``pytest_plugins``)."""

import pytest

pytest.register_assert_rewrite(
    "cp_e2e_helpers",
    "cp_options_helpers",
    "filters_helpers",
    "helm_helpers",
    "remote_helpers",
    "snapshot_helpers",
    "sync_options_helpers",
    "sync_remote_helpers",
)

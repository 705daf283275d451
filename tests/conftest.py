"""Shared test setup: offline hub, deterministic CPU threads, fixture paths and the `slow` gate."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "original"


def pytest_collection_modifyitems(config, items):
    # minutes-long tests first (stable order otherwise): with -n 2 one worker starts on them while the other
    # takes the short ones, instead of one of them starting at the end of the run; `--dist worksteal` (the README's
    # command) lets an idle worker take the short tests queued behind a long one
    items.sort(key=lambda item: "long" not in item.keywords)
    if os.environ.get("RUN_SLOW", "0") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES

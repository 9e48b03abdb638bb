"""Where the shared vectors are, and the real services the integration
tests use (SAGA_PG_URL, SAGA_KAFKA_BROKERS: set by make check's
tests/integration/test_python_sdk.sh; without them those tests are skipped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VECTORS = Path(os.environ.get("SAGA_VECTORS_DIR",
                              Path(__file__).resolve().parents[3] / "tests" / "vectors"))


def services() -> tuple[str, str]:
    pg, kafka = os.environ.get("SAGA_PG_URL"), os.environ.get("SAGA_KAFKA_BROKERS")
    if not pg or not kafka:
        pytest.skip("needs SAGA_PG_URL and SAGA_KAFKA_BROKERS (make check sets them)")
    return pg, kafka

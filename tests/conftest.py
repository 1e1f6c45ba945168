"""Shared test settings: float64 references, one torch thread, deterministic seeds."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a throwaway PostgreSQL server on 127.0.0.1 (skips where the server package is missing)."""
    from pg_server import Cluster, server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does)")
    cluster = Cluster().start()
    yield cluster.url
    cluster.stop()

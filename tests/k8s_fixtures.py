"""Fixtures for the Kubernetes tests: the in-test API server and a backend wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.compute.kubernetes.backend import KubernetesBackend, client_configuration
from pfcon.compute.kubernetes.job import JobTemplate
from pfcon.settings import KubernetesSettings
from tests.k8s_server import FakeApiServer, FakeCluster, write_kubeconfig

TOKEN = "pfcon-test-token"
CLAIM = "storebase"


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(token=TOKEN)


@pytest.fixture
def api_server(cluster: FakeCluster) -> Iterator[FakeApiServer]:
    with FakeApiServer(cluster) as server:
        yield server


@pytest.fixture
def kubeconfig(api_server: FakeApiServer, tmp_path: Path) -> str:
    return write_kubeconfig(tmp_path / "kubeconfig", api_server.url, TOKEN)


@pytest.fixture
def template() -> JobTemplate:
    return JobTemplate(namespace="default", claim_name=CLAIM, ttl_seconds=3600)


@pytest.fixture
def k8s_backend(kubeconfig: str, template: JobTemplate) -> Iterator[KubernetesBackend]:
    backend = KubernetesBackend(client_configuration(KubernetesSettings(kubeconfig=kubeconfig)), template)
    yield backend
    backend.close()

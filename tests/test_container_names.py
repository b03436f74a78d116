"""A submit asks the engine about its jid only when a recent listing of the engine's container
names holds it (pfcon.compute.dockerapi.names); a name taken since is caught at the start."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pfcon.compute.dockerapi.docker import DockerBackend
from pfcon.compute.dockerapi.names import NameSnapshot
from pfcon.errors import JobExists
from tests.api_helpers import login, submit, wait_terminal
from tests.conftest import Engine, remove_test_containers
from tests.contract import make_spec
from tests.helpers import TEST_LABELS, job_form, wait_for

IMAGE = "localhost/pfcon-busybox:1"


class Listing:
    """What the engine "holds", for the snapshot's own rules; counts the listings asked for."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.calls = 0
        self.fail = False
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> set[str]:
        self.calls += 1
        self.release.wait(5)
        if self.fail:
            raise OSError("engine away")
        return set(self.names)


def _settled(snapshot: NameSnapshot) -> None:
    assert wait_for(lambda: not snapshot._refreshing, timeout=5)


def test_no_listing_yet_means_ask_the_engine_and_a_listing_then_answers() -> None:
    listing = Listing({"taken"})
    snapshot = NameSnapshot(listing, refresh_seconds=60, trust_seconds=60)
    assert snapshot.free("new") is False  # nothing listed yet: the caller asks the engine
    _settled(snapshot)
    assert snapshot.free("new") is True
    assert snapshot.free("taken") is False
    assert listing.calls == 1  # fresh enough: no second listing


def test_an_old_listing_is_refreshed_in_the_background_one_at_a_time() -> None:
    listing = Listing(set())
    snapshot = NameSnapshot(listing, refresh_seconds=0.0, trust_seconds=60)
    snapshot.free("a")
    _settled(snapshot)
    listing.release.clear()  # the next listing hangs until released
    listing.names = {"a"}
    for _ in range(20):
        assert snapshot.free("a") is True  # answered from the listing before, at once
    assert listing.calls == 2  # one refresh in flight, however many submits came
    listing.release.set()
    _settled(snapshot)
    assert snapshot.free("a") is False


def test_a_listing_too_old_is_not_trusted_and_a_failed_refresh_keeps_it_old() -> None:
    listing = Listing(set())
    snapshot = NameSnapshot(listing, refresh_seconds=0.0, trust_seconds=0.3)
    snapshot.free("a")
    _settled(snapshot)
    listing.fail = True
    time.sleep(0.35)
    assert snapshot.free("a") is False
    _settled(snapshot)
    assert snapshot.free("a") is False  # the failed listing did not make the old one young


@pytest.mark.integration
class TestOnTheEngines:
    @pytest.fixture
    def backend(self, engine: Engine):
        backend = engine.backend()
        yield backend
        backend.close()
        remove_test_containers(engine.client)

    @staticmethod
    def _fresh(backend: DockerBackend) -> None:
        backend._names.free("warm-up")
        assert wait_for(lambda: backend._names.free("warm-up"), timeout=10)

    def test_a_foreign_container_blocks_its_jid_with_or_without_a_listing(
        self, backend, engine: Engine, jid: str, tmp_path: Path
    ) -> None:
        engine.client.containers.create(IMAGE, ["true"], name=jid, labels=TEST_LABELS)
        spec = make_spec(jid, tmp_path, ("true",))
        with pytest.raises(JobExists, match="already exists"):
            backend.validate(spec)  # no listing yet: the engine is asked
        self._fresh(backend)
        assert not backend._names.free(jid)
        with pytest.raises(JobExists, match="already exists"):
            backend.validate(spec)

    def test_a_free_jid_costs_no_engine_call_once_listed(
        self, backend, jid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._fresh(backend)
        backend.validate(make_spec("image-seen", tmp_path, ("true",)))  # the image look-up is cached
        asked: list[str] = []
        original = backend.client.api.inspect_container
        monkeypatch.setattr(
            backend.client.api, "inspect_container", lambda *a, **k: asked.append(a) or original(*a, **k)
        )
        backend.validate(make_spec(jid, tmp_path, ("true",)))
        assert asked == []


@pytest.mark.integration
def test_a_name_taken_after_the_listing_fails_the_job_at_its_start(make_app, docker_client, jid: str) -> None:
    """The window the listing leaves open: the job is accepted, then fails with a message that
    says why, and the other container is left alone."""
    app = make_app()
    names = app.extensions["pfcon"].backend._names
    names.refresh_seconds = 3600  # no refresh may hide the new container from this submit
    names.free("warm-up")
    assert wait_for(lambda: names.free("warm-up"), timeout=10)
    foreign = docker_client.containers.create(IMAGE, ["true"], name=jid, labels=TEST_LABELS)
    client = app.test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a.txt": "x"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedWithError"
    assert "not pfcon's" in compute["message"], compute
    foreign.reload()
    assert foreign.status == "created"

"""Link amplification and name clashes through the API, on real fslink, Swift and zip uploads.

Folders holding links to folders of links double what they copy at each level; the copies
are counted while the links are planned, so such a tree is a 413 with a message, quickly,
and leaves nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api_helpers import login, submit
from tests.helpers import doubling_chain, job_form, make_zip
from tests.s3_fixtures import s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.test_innetwork import innetwork  # noqa: F401

pytestmark = pytest.mark.integration

LEVELS = 24  # 2**24 copies of the deepest folder, were nothing counted


def _left_behind(storebase: Path) -> list[str]:
    return sorted(p.name for p in storebase.iterdir() if p.name.startswith("key-"))


@pytest.mark.parametrize("storage", ["fslink", "swift", "s3"])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_LINKED_ENTRIES": "1000"}, "MAX_LINKED_ENTRIES"),
        ({"MAX_JOB_LINKS": "100"}, "MAX_JOB_LINKS"),
    ],
)
def test_links_to_folders_of_links_are_a_413_in_network(
    storage: str,
    env: dict,
    message: str,
    innetwork,  # noqa: F811
    jid: str,
    storebase: Path,
) -> None:
    client, auth, data = innetwork(storage, **env)
    base = f"home/{jid}"
    data.put({**doubling_chain(f"{base}/lib", LEVELS), f"{base}/in/start.chrislink": f"{base}/lib/L0"})
    started = time.monotonic()
    answer = submit(client, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 413, answer.get_json()
    assert message in answer.get_json()["message"]
    assert time.monotonic() - started < 30
    assert _left_behind(storebase) == []


@pytest.mark.parametrize("storage", ["fslink", "swift", "s3"])
def test_a_small_chain_is_copied_once_per_link(storage: str, innetwork, jid: str, storebase: Path) -> None:  # noqa: F811
    client, auth, data = innetwork(storage)
    base = f"home/{jid}"
    data.put({**doubling_chain(f"{base}/lib", 4), f"{base}/in/start.chrislink": f"{base}/lib/L0"})
    answer = submit(client, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["data"]["nfiles"] == 2**5 - 1
    incoming = storebase / f"key-{jid}/incoming"
    assert not list(incoming.rglob("*.chrislink"))


@pytest.mark.parametrize("storage", ["fslink", "swift", "s3"])
def test_a_link_whose_copy_name_is_taken_is_a_400(storage: str, innetwork, jid: str, storebase: Path) -> None:  # noqa: F811
    client, auth, data = innetwork(storage)
    base = f"home/{jid}"
    data.put(
        {
            f"{base}/lib/f.txt": "theirs",
            f"{base}/in/f.txt": "mine",
            f"{base}/in/f.chrislink": f"{base}/lib/f.txt",
        }
    )
    answer = submit(client, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 400, answer.get_json()
    assert "already taken" in answer.get_json()["message"]
    assert _left_behind(storebase) == []


def test_a_small_zip_of_links_cannot_expand_past_the_caps(make_app, jid: str, storebase: Path) -> None:
    client = make_app(MAX_LINKED_ENTRIES="5000").test_client()
    files = {**doubling_chain("d", LEVELS), "start.chrislink": "d/L0"}
    assert len(make_zip(files)) < 16 * 1024
    started = time.monotonic()
    answer = submit(client, login(client), job_form(jid), files)
    assert answer.status_code == 413, answer.get_json()
    assert "MAX_LINKED_ENTRIES" in answer.get_json()["message"]
    assert time.monotonic() - started < 30
    assert _left_behind(storebase) == []
    assert not any((storebase / ".pfcon-uploads").iterdir())

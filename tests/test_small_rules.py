"""Smaller hardening rules: reserved names in any case, a short production key, input folders
named twice, atomic state files, and staging left by a worker that died mid-upload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfcon.settings import SettingsError, ZipLimits, load_serving_settings, load_settings
from pfcon.storage.staging import SETTLE_SECONDS, Sweeper, sweep
from pfcon.storage.unzip import StreamingUnzip
from pfcon.storebase import write_atomically
from tests.api_helpers import login, submit
from tests.helpers import job_form

PROD = {"PFCON_USER": "u", "PFCON_PASSWORD": "p", "STOREBASE": "/data/sb"}


@pytest.mark.parametrize("key", ["short", "x" * 31, "é" * 15])
def test_a_short_production_secret_key_stops_the_service(key) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY: must be at least 32 bytes"):
        load_settings({**PROD, "SECRET_KEY": key})
    assert load_settings({**PROD, "SECRET_KEY": "k" * 32}).secret_key == "k" * 32


def test_write_atomically_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, "old")
    write_atomically(target, "new" * 1000)
    assert target.read_text() == "new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_sweep_removes_only_what_no_live_upload_holds(tmp_path: Path) -> None:
    uploads = tmp_path / ".pfcon-uploads"
    uploads.mkdir()
    live = StreamingUnzip(uploads / "live", ZipLimits())
    dead = uploads / "dead"
    dead.mkdir()
    fd = os.open(dead, os.O_RDONLY)
    for _ in range(1100):  # deeper than any recursion limit (made fd-relative: pathlib would recurse)
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    (dead / "f").write_text("x")
    young = uploads / "young"
    young.mkdir()
    for path in (uploads / "live", dead):
        _age(path, SETTLE_SECONDS + 5)
    assert sweep(uploads) == 1
    assert sorted(p.name for p in uploads.iterdir()) == ["live", "young"]
    live.close()
    assert sorted(p.name for p in uploads.iterdir()) == ["young"]


def test_staging_of_a_killed_worker_is_swept_at_start(tmp_path: Path) -> None:
    """A process killed mid-upload (SIGKILL: no cleanup ran) leaves its staging folder unlocked."""
    uploads = tmp_path / ".pfcon-uploads"
    uploads.mkdir()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pfcon.settings import ZipLimits;"
            "from pfcon.storage.unzip import StreamingUnzip;"
            f"u = StreamingUnzip(Path({str(uploads / 'killed')!r}), ZipLimits());"
            "u.write(b'PK\\x03\\x04'); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout.readline() == b"ready\n"
    _age(uploads / "killed", SETTLE_SECONDS + 5)
    assert sweep(uploads) == 0  # alive: held
    child.send_signal(signal.SIGKILL)
    child.wait()
    sweeper = Sweeper(uploads, interval=0.1).start()
    try:
        assert list(uploads.iterdir()) == []
    finally:
        sweeper.stop()


@pytest.mark.integration
@pytest.mark.parametrize("reserved", ["KEY-other/incoming", "Key-x", ".PFCON-uploads/x", ".Pfcon-Uploads"])
def test_reserved_names_in_any_case_are_refused(make_app, storebase, jid, reserved) -> None:
    (storebase / "data/in").mkdir(parents=True)
    (storebase / "data/in/a.txt").write_text("1")
    client = make_app(PFCON_INNETWORK="true", STORAGE_ENV="fslink").test_client()
    auth = login(client)
    for fields in (
        {"input_dirs": [reserved], "output_dir": "out"},
        {"input_dirs": ["data/in"], "output_dir": reserved},
    ):
        answer = submit(client, auth, job_form(jid, **fields))
        assert answer.status_code == 400 and "pfcon's own" in answer.get_json()["message"], answer.get_json()
    assert not (storebase / "out").exists()


@pytest.mark.integration
def test_an_input_folder_named_twice_is_staged_once(make_app, storebase, jid) -> None:
    (storebase / "data/in").mkdir(parents=True)
    for i in range(3):
        (storebase / f"data/in/{i}.txt").write_text(str(i))
    client = make_app(PFCON_INNETWORK="true", STORAGE_ENV="fslink").test_client()
    auth = login(client)
    answer = submit(
        client, auth, job_form(jid, input_dirs=["data/in", "data/in", "data/./in"], output_dir="out")
    )
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["data"]["nfiles"] == 3


def test_slow_client_settings() -> None:
    defaults = load_serving_settings({})
    assert (defaults.client_timeout, defaults.header_timeout, defaults.body_slots) == (30, 20, 8)
    assert load_serving_settings({"PFCON_THREADS": "3"}).body_slots == 1
    assert load_serving_settings({"PFCON_UPLOAD_SLOTS": "5"}).body_slots == 5
    for variable in ("PFCON_CLIENT_TIMEOUT", "PFCON_HEADER_TIMEOUT", "PFCON_UPLOAD_SLOTS"):
        with pytest.raises(SettingsError, match=variable):
            load_serving_settings({variable: "0"})

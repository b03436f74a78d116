"""What only S3 has: multipart transfers, interrupted uploads, throttling, outages, recovery.

Every test runs jobs on the real engine against Swift's s3api; outages and throttling come
from a real TCP relay between pfcon and the server (:class:`tests.s3_fixtures.Relay`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from pfcon.settings import S3Settings
from pfcon.storage import s3store
from pfcon.storage.objectstore import local_etag
from pfcon.storage.s3 import S3Storage
from pfcon.storage.s3store import MAX_PARTS, S3Bucket
from pfcon.storebase import StoreBase
from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import job_form
from tests.s3_fixtures import (  # noqa: F401
    ACCESS_KEY,
    ENDPOINT,
    SECRET_KEY,
    Relay,
    relay_fixture,
    s3_bucket_fixture,
    s3_client_fixture,
    s3_env,
    unfinished_uploads,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part: the smallest threshold pfcon accepts
BIG = 2 * PART + 12345  # three parts, the last a short one


def _md5_of_object(client: Any, bucket: str, key: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def _app_behind(relay: Relay, make_app, s3_client, s3_bucket: str, base: str, **env: str):
    """A pfcon whose S3 endpoint is the relay, and one input file under ``base/in``: (client, auth)."""
    client = make_app(**s3_env(s3_bucket, S3_ENDPOINT_URL=relay.url, **env)).test_client()
    s3_client.put_object(Bucket=s3_bucket, Key=f"{base}/in/a.txt", Body=b"alpha")
    return client, login(client)


def _run_copy_job(client, auth, jid: str, base: str) -> str:
    """Submit pl-copy from ``base/in`` to ``base/out``; returns the output listing URL."""
    answer = submit(client, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 201, answer.get_json()
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    return f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out"


def test_multipart_round_trip_is_byte_for_byte(
    make_app, s3_client, s3_bucket: str, storebase: Path, tmp_path: Path, jid: str
) -> None:
    """Over the threshold both ways: ranged download into the job, multipart upload of its output."""
    client = make_app(**s3_env(s3_bucket, S3_MULTIPART_THRESHOLD=str(PART))).test_client()
    auth = login(client)
    base = f"home/{jid}"
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(BIG))
    s3_client.upload_file(str(source), s3_bucket, f"{base}/in/big.bin")
    url = _run_copy_job(client, auth, jid, base)
    staged = storebase / f"key-{jid}/incoming/big.bin"
    assert local_etag(staged, None) == local_etag(source, None)

    assert client.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-big.bin"]
    key = f"{base}/out/out-big.bin"
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] == BIG and head["ETag"].endswith('-3"')  # three parts
    assert head["ETag"].strip('"') == local_etag(source, PART)  # our checksum is the server's
    assert _md5_of_object(s3_client, s3_bucket, key) == local_etag(source, None)
    assert unfinished_uploads(s3_client, s3_bucket, base) == []

    # A second listing finds the multipart object identical and uploads nothing.
    assert client.get(url, headers=auth).status_code == 200
    assert s3_client.head_object(Bucket=s3_bucket, Key=key)["LastModified"] == head["LastModified"]


def test_interrupted_upload_leaves_no_object_and_a_retry_completes_it(
    make_app, relay: Relay, s3_client, s3_bucket: str, tmp_path: Path, jid: str
) -> None:
    """The network dies in the middle of a multipart upload: 503, no half object, parts cleaned later."""
    base = f"home/{jid}"
    client, auth = _app_behind(relay, make_app, s3_client, s3_bucket, base, S3_MULTIPART_THRESHOLD=str(PART))
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(BIG))
    s3_client.upload_file(str(source), s3_bucket, f"{base}/in/big.bin")
    url = _run_copy_job(client, auth, jid, base)
    key = f"{base}/out/out-big.bin"

    relay.cut_after(PART + MiB)  # the multipart upload starts, then the endpoint is gone
    answer = client.get(url, headers=auth)
    assert answer.status_code == 503 and "S3 at" in answer.get_json()["message"], answer.get_json()
    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=key).get("Contents") is None
    assert [u["Key"] for u in unfinished_uploads(s3_client, s3_bucket, key)] == [key]

    relay.up()  # the same pfcon, no restart
    assert client.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-a.txt", "out-big.bin"]
    assert _md5_of_object(s3_client, s3_bucket, key) == local_etag(source, None)
    assert unfinished_uploads(s3_client, s3_bucket, key) == []  # the stale parts were aborted


def test_endpoint_down_is_503_and_pfcon_recovers_without_restart(
    make_app, relay: Relay, s3_client, s3_bucket: str, storebase: Path, jid: str
) -> None:
    base = f"home/{jid}"
    client, auth = _app_behind(relay, make_app, s3_client, s3_bucket, base)

    relay.down()
    health = client.get("/api/v1/health/")
    assert health.status_code == 503 and "S3 at" in health.get_json()["message"]
    form = job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out")
    answer = submit(client, auth, form)
    assert answer.status_code == 503 and "does not answer" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()

    relay.up()
    assert client.get("/api/v1/health/").status_code == 200
    url = _run_copy_job(client, auth, jid, base)
    assert client.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-a.txt"]
    assert s3_client.get_object(Bucket=s3_bucket, Key=f"{base}/out/out-a.txt")["Body"].read() == b"alpha"


def test_refused_credentials_are_503_naming_the_reason(
    make_app, s3_bucket: str, storebase: Path, jid: str
) -> None:
    client = make_app(**s3_env(s3_bucket, S3_SECRET_KEY="not-the-key")).test_client()
    health = client.get("/api/v1/health/")
    assert health.status_code == 503 and "HTTP 403" in health.get_json()["message"]
    answer = submit(client, login(client), job_form(jid, input_dirs=["home/x/in"], output_dir="home/x/out"))
    assert answer.status_code == 503 and "SignatureDoesNotMatch" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()


def test_throttling_is_retried_with_backoff_then_503(
    make_app, relay: Relay, s3_client, s3_bucket: str, storebase: Path, jid: str
) -> None:
    """botocore's standard retry mode: two SlowDown answers are ridden out, three are a 503."""
    base = f"home/{jid}"
    client, auth = _app_behind(relay, make_app, s3_client, s3_bucket, base)

    relay.throttle(3)
    answer = submit(client, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 503 and "SlowDown" in answer.get_json()["message"], answer.get_json()
    assert relay.throttled == 3 and not (storebase / f"key-{jid}").exists()

    relay.throttle(2)
    second = f"{jid}-2"
    answer = submit(client, auth, job_form(second, input_dirs=[f"{base}/in"], output_dir=f"{base}/out"))
    assert answer.status_code == 201, answer.get_json()
    assert relay.throttled == 2 and answer.get_json()["data"]["nfiles"] == 1


@pytest.mark.parametrize(
    ("size", "part"),
    [
        (PART - 1, None),  # below the threshold: one PUT
        (PART, PART),
        (PART * MAX_PARTS, PART),
        (PART * MAX_PARTS + 1, 2 * PART),  # one part too many: parts twice as large
        (6 * 1024**4, 5 * 1024**3),  # beyond what 1 000 parts of 5 GiB hold: S3's largest part
    ],
)
def test_part_sizes_keep_within_the_servers_part_count(size: int, part: int | None) -> None:
    store = S3Bucket(S3Settings("http://s3.invalid", "k", "s", bucket_name="b", multipart_threshold=PART))
    assert store.part_size(size) == part


def test_a_file_needing_more_parts_than_allowed_goes_alone_in_larger_parts(
    monkeypatch, s3_client, s3_bucket: str, storebase: Path, jid: str
) -> None:
    """With a cap of 2 parts, a 3-part file is sent in 2 parts of twice the size; the rest as usual."""
    monkeypatch.setattr(s3store, "MAX_PARTS", 2)
    settings = S3Settings(ENDPOINT, ACCESS_KEY, SECRET_KEY, bucket_name=s3_bucket, multipart_threshold=PART)
    storage = S3Storage(StoreBase(storebase), settings)
    storage.storebase.claim(jid)
    outgoing = storage.storebase.outgoing(jid)
    outgoing.mkdir()
    (outgoing / "big.bin").write_bytes(os.urandom(BIG))
    (outgoing / "mid.bin").write_bytes(os.urandom(PART + 1))
    (outgoing / "small.txt").write_text("s")
    prefix = f"home/{jid}/out"
    storage.remember_output(jid, PurePosixPath(prefix))
    assert storage.output(jid, prefix).body["rel_file_paths"] == ["big.bin", "mid.bin", "small.txt"]
    etags = {o.name.rsplit("/", 1)[1]: o.etag for o in storage.store.objects(prefix + "/")}
    assert etags["big.bin"] == local_etag(outgoing / "big.bin", 2 * PART) and etags["big.bin"].endswith("-2")
    assert etags["mid.bin"] == local_etag(outgoing / "mid.bin", PART) and etags["mid.bin"].endswith("-2")
    assert etags["small.txt"] == local_etag(outgoing / "small.txt", None)

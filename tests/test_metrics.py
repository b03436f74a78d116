"""``/metrics`` after a known workload on a live gunicorn with two workers: every count exact.

The workload goes through both workers (requests land on either), so the totals are only
right if prometheus_client's multiprocess files are summed; the history gauges agree because
they are read from the shared job history.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pfcon.settings import SettingsError, load_settings
from tests.helpers import TEST_LABEL, job_form, make_zip
from tests.live import free_port, live_pfcon
from tests.test_load_and_races import _finish, _session

pytestmark = pytest.mark.integration
JOBS = 4
CLASSIC = {"api": "classic"}


def scrape(url: str, **kwargs) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` as {(sample name, labels): value}."""
    answer = requests.get(url, timeout=30, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def run_workload(url: str) -> tuple[int, int]:
    """4 jobs run, fetched and 2 deleted; 2 refused submissions; 1 delete of nothing.

    Returns the bytes of the accepted submissions' bodies and the bytes of output downloaded.
    """
    session = _session(url)
    uploaded = downloaded = 0
    for n in range(JOBS):
        archive = make_zip({f"in-{n}.txt": "x" * (1000 * (n + 1))})
        answer = session.post(
            url + "jobs/", data=job_form(f"m-{n}"), files={"data_file": ("in.zip", archive)}
        )
        assert answer.status_code == 201, answer.text
        uploaded += int(answer.request.headers["Content-Length"])
    assert session.post(url + "jobs/", data=job_form("m-bad", auid=None)).status_code == 400
    duplicate = session.post(url + "jobs/", data=job_form("m-0"), files={"data_file": ("in.zip", archive)})
    assert duplicate.status_code == 409
    for n in range(JOBS):
        assert _finish(session, url, f"m-{n}") == "finishedSuccessfully"
        output = session.get(url + f"jobs/m-{n}/file/", timeout=60)
        assert output.status_code == 200
        downloaded += len(output.content)
    for n in range(2):
        assert session.delete(url + f"jobs/m-{n}/").status_code == 204
    assert session.delete(url + "jobs/m-never/").status_code == 404
    return uploaded, downloaded


def test_metrics_count_a_known_workload_exactly_across_two_workers(
    docker_client, storebase: Path, tmp_path: Path
) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    (multiproc / "counter_99999.db").write_bytes(b"stale values of an earlier run")
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        assert len(url.worker_pids()) == 2
        assert not (multiproc / "counter_99999.db").exists(), "the folder was not emptied at start"
        metrics_url = url.removesuffix("api/v1/") + "metrics"
        uploaded, downloaded = run_workload(url)
        token = _session(url).headers["Authorization"]
        samples = scrape(metrics_url, headers={"Authorization": token})
        writers = {path.stem.rsplit("_", 1)[1] for path in multiproc.glob("*.db")}
        assert {str(pid) for pid in url.worker_pids()} <= writers, "a worker wrote no metrics"

        assert value(samples, "pfcon_jobs_submitted_total", **CLASSIC) == JOBS
        assert value(samples, "pfcon_jobs_refused_total", api="classic", reason="invalid_input") == 1
        assert value(samples, "pfcon_jobs_refused_total", api="classic", reason="job_exists") == 1
        assert (
            value(samples, "pfcon_jobs_finished_total", api="classic", status="finishedSuccessfully") == JOBS
        )
        assert (
            value(samples, "pfcon_operations_total", api="classic", operation="start", outcome="ok") == JOBS
        )
        assert (
            value(samples, "pfcon_operations_total", api="classic", operation="output", outcome="ok") == JOBS
        )
        assert value(samples, "pfcon_operations_total", api="classic", operation="delete", outcome="ok") == 2
        assert (
            value(
                samples, "pfcon_operations_total", api="classic", operation="delete", outcome="job_not_found"
            )
            == 1
        )
        assert value(samples, "pfcon_input_bytes_total", **CLASSIC) == uploaded
        assert value(samples, "pfcon_output_bytes_total", **CLASSIC) == downloaded
        assert value(samples, "pfcon_job_queue_wait_seconds_count", **CLASSIC) == JOBS
        assert (
            value(samples, "pfcon_job_run_seconds_count", api="classic", status="finishedSuccessfully")
            == JOBS
        )
        assert value(samples, "pfcon_staging_seconds_count", api="classic", storage="zipfile") == JOBS
        assert value(samples, "pfcon_output_delivery_seconds_count", api="classic", storage="zipfile") == JOBS
        assert value(samples, "pfcon_engine_call_seconds_count", engine="docker", call="submit") == JOBS
        assert (
            value(samples, "pfcon_storage_call_seconds_count", storage="zipfile", call="stage_input") == JOBS
        )
        assert total(samples, "pfcon_engine_call_errors_total", call="remove", error="JobNotFound") == 1
        # the state gauges, from the job store: live jobs (2 of the 4 were deleted)
        assert value(samples, "pfcon_jobs", api="classic", status="finishedSuccessfully") == JOBS - 2
        assert value(samples, "pfcon_store_up") == 1
        assert value(samples, "pfcon_queue_length") == 0
        host = docker_client.info()
        assert value(samples, "pfcon_capacity_total_cpus") == host["NCPU"]
        assert value(samples, "pfcon_capacity_free_cpus") == host["NCPU"]  # nothing runs now
        # the admission queue's capacity (on by default): the engine's, in the whole MiB it hands out
        assert value(samples, "pfcon_capacity_total_memory_bytes") == host["MemTotal"] // 2**20 * 2**20

        basic = base64.b64encode(b"pfcon:pfcon1234").decode()
        assert scrape(metrics_url, headers={"Authorization": f"Basic {basic}"})
        wrong = base64.b64encode(b"pfcon:nope").decode()
        for headers in ({}, {"Authorization": f"Basic {wrong}"}, {"Authorization": "Bearer forged"}):
            refused = requests.get(metrics_url, headers=headers, timeout=10)
            assert refused.status_code == 401 and "message" in refused.json()


def test_metrics_on_their_own_bind_open_and_off(docker_client, storebase: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_METRICS": f"127.0.0.1:{port}"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        session = _session(url)
        assert session.post(url + "jobs/", data=job_form("b-1", auid=None)).status_code == 400
        samples = scrape(f"http://127.0.0.1:{port}/metrics")  # no credentials on the separate bind
        assert value(samples, "pfcon_jobs_refused_total", api="classic", reason="invalid_input") == 1
        assert value(samples, "pfcon_store_up") == 1
        assert session.get(url.removesuffix("api/v1/") + "metrics").status_code == 404


def test_metrics_access_modes_on_the_app(make_app) -> None:
    open_app = make_app(PFCON_METRICS="open").test_client()
    answer = open_app.get("/metrics")
    assert answer.status_code == 200 and b"pfcon_store_up 1.0" in answer.data
    assert make_app(PFCON_METRICS="off").test_client().get("/metrics").status_code == 404
    assert make_app().test_client().get("/metrics").status_code == 401  # token is the default


@pytest.mark.parametrize("bad", ["sometimes", "host:", ":80", "host:99999"])
def test_a_bad_metrics_setting_names_the_variable(bad: str) -> None:
    with pytest.raises(SettingsError, match="PFCON_METRICS"):
        load_settings({"APPLICATION_MODE": "development", "STOREBASE": "/tmp", "PFCON_METRICS": bad})

"""The Slurm backend's data without a cluster: settings, directives, runtime lines, template, parsers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pfcon.compute.base import JobSpec, JobStatus, Mount, Resources
from pfcon.compute.batch.backend import BatchBackend
from pfcon.compute.batch.jobfiles import JobFiles
from pfcon.compute.batch.outcome import decide, exit_outcome, from_table
from pfcon.compute.batch.runtimes import RUNTIMES, run_command
from pfcon.compute.batch.scheduler import BatchOptions, QueueState
from pfcon.compute.batch.script import ScriptTemplate
from pfcon.compute.batch.slurm import (
    SLURM,
    STATES,
    build_slurm_backend,
    cpus,
    parse_accounting,
    parse_job_id,
    parse_ping,
    parse_state,
)
from pfcon.settings import SettingsError, load_settings

BASE = {"APPLICATION_MODE": "development", "STOREBASE": "/sb", "CONTAINER_ENV": "slurm"}


def spec(**overrides) -> JobSpec:
    fields = {
        "jid": "j-1",
        "image": "localhost/pfcon-busybox:1",
        "command": ("pl-copy", "/share/incoming", "/share/outgoing"),
        "env": {"A": "1"},
        "resources": Resources(1, 1500, 300, 0),
        "mounts": (
            Mount("/sb/key-j-1/incoming", "/share/incoming", read_only=True),
            Mount("/sb/key-j-1/outgoing", "/share/outgoing", read_only=False),
        ),
        "labels": {"site": "bch"},
    }
    fields.update(overrides)
    return JobSpec(**fields)


def backend(template: ScriptTemplate | None = None, runtime: str = "docker", **options) -> BatchBackend:
    return BatchBackend(
        SLURM,
        RUNTIMES[runtime],
        template or ScriptTemplate.packaged("slurm-job.sh"),
        BatchOptions(**options),
        Path("/sb"),
        "/nodes/sb",
    )


def render(job: JobSpec, **kwargs) -> str:
    chosen = backend(**kwargs)
    return chosen.render(job, JobFiles.of(Path("/sb"), "/nodes/sb", job.jid, "slurm"))


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


# -- settings ------------------------------------------------------------------------------
def test_slurm_settings_are_read_only_for_slurm() -> None:
    docker = load_settings(
        {**BASE, "CONTAINER_ENV": "docker", "TIMELIMIT_MINUTES": "soon", "SLURM_RUNTIME": "x"}
    )
    assert docker.slurm.timelimit_minutes is None
    slurm = load_settings(
        {
            **BASE,
            "TIMELIMIT_MINUTES": "90",
            "SLURM_PARTITION": "short",
            "SLURM_SBATCH_OPTIONS": "--qos=long -A chris --comment='a b' --exclusive",
            "SLURM_RUNTIME": "podman",
            "SLURM_ACCOUNTING": "yes",
            "SLURM_CHECK_IMAGES": "no",
            "SLURM_COMMAND_TIMEOUT": "5",
        }
    ).slurm
    assert slurm.timelimit_minutes == 90 and slurm.partition == "short"
    assert slurm.sbatch_options == ("--qos=long", "-A chris", "'--comment=a b'", "--exclusive")
    assert slurm.runtime == "podman" and slurm.accounting and not slurm.check_images
    assert slurm.command_timeout_seconds == 5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TIMELIMIT_MINUTES", "0"),
        ("TIMELIMIT_MINUTES", "1h"),
        ("SLURM_RUNTIME", "lxc"),
        ("SLURM_SBATCH_OPTIONS", "qos=long"),
        ("SLURM_SBATCH_OPTIONS", "--comment='unclosed"),
        ("SLURM_SCRIPT_TEMPLATE", "/nonexistent/job.sh"),
        ("SLURM_COMMAND_TIMEOUT", "0"),
    ],
)
def test_bad_slurm_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**BASE, variable: value})
    assert error.value.variable == variable


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STOREBASE": "/data/store base"}, "STOREBASE"),
        ({"STOREBASE": "/data/100%"}, "STOREBASE"),
        ({"STOREBASE": None, "COMPUTE_VOLUME_TYPE": "docker_local_volume"}, "COMPUTE_VOLUME_TYPE"),
        ({"SLURM_RUNTIME": "apptainer", "CONTAINER_USER": "1000:1000"}, "CONTAINER_USER"),
    ],
)
def test_settings_slurm_cannot_honour_stop_the_service(env: dict, variable: str) -> None:
    environ = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    with pytest.raises(SettingsError) as error:
        build_slurm_backend(load_settings(environ))
    assert error.value.variable == variable


# -- directives ----------------------------------------------------------------------------
def test_resources_become_sbatch_lines() -> None:
    lines = directives(render(spec(resources=Resources(1, 1500, 300, 2)), time_limit_minutes=30))
    assert lines[:6] == [
        "--job-name=pfcon-j-1",
        "--output=/nodes/sb/key-j-1/slurm/output.log",
        "--chdir=/nodes/sb/key-j-1/slurm",
        "--export=NONE",
        "--nodes=1",
        "--ntasks=1",
    ]
    assert lines[6:] == ["--cpus-per-task=2", "--mem=300M", "--gres=gpu:2", "--time=30"]


@pytest.mark.parametrize(
    ("millicores", "expected"), [(1, 1), (500, 1), (1000, 1), (1001, 2), (2500, 3), (None, None)]
)
def test_cpus_are_millicores_rounded_up(millicores: int | None, expected: int | None) -> None:
    assert cpus(millicores) == expected


def test_partition_and_site_options_come_last_and_job_overrides_time() -> None:
    job = spec(env={"TIMELIMIT_MINUTES": "7"}, resources=Resources(1, None, None, 0))
    lines = directives(
        render(job, time_limit_minutes=30, queue="short", extra_options=("--qos=long", "-A x"))
    )
    assert "--time=7" in lines and not any(line.startswith(("--mem", "--cpus", "--gres")) for line in lines)
    assert lines[-3:] == ["--partition=short", "--qos=long", "-A x"]


def test_no_time_limit_leaves_the_partition_default() -> None:
    assert not any(line.startswith("--time") for line in directives(render(spec())))


# -- runtimes ------------------------------------------------------------------------------
def _argv(line: str) -> list[str]:
    """What the shell passes to the program of a rendered line (the program is printf here)."""
    script = f'container=pfcon-slurm-42\nprintf "%s\\0" {line.split(" ", 1)[1]}'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return out.split("\0")[:-1]


def test_docker_line_carries_mounts_env_user_limits_labels() -> None:
    job = spec(user="1000:2000", shm_size_mib=64, env={"Q": 'it\'s "x" $HOME\nnext'})
    argv = _argv(run_command(RUNTIMES["docker"], job, {"org.chrisproject.pfcon.batch.jid": "j-1"}))
    assert argv[:5] == ["run", "--name", "pfcon-slurm-42", "--pull=never", "--sig-proxy=false"]
    assert argv[5:9] == [
        "--volume",
        "/sb/key-j-1/incoming:/share/incoming:ro",
        "--volume",
        "/sb/key-j-1/outgoing:/share/outgoing",
    ]
    assert argv[9:11] == ["--env", 'Q=it\'s "x" $HOME\nnext']  # reaches docker verbatim
    assert argv[11:] == [
        "--user", "1000:2000", "--cpus", "1.5", "--memory=300m", "--memory-swap=300m", "--shm-size=64m",
        "--label", "site=bch", "--label", "org.chrisproject.pfcon.batch.jid=j-1",
        "--", "localhost/pfcon-busybox:1", "pl-copy", "/share/incoming", "/share/outgoing",
    ]  # fmt: skip


def test_podman_line_matches_docker_and_gpus_follow_slurm() -> None:
    job = spec(resources=Resources(1, 1000, 64, 1))
    docker_argv = _argv(run_command(RUNTIMES["docker"], job, {}))
    podman_argv = _argv(run_command(RUNTIMES["podman"], job, {}))
    assert "--gpus" in docker_argv and docker_argv[docker_argv.index("--gpus") + 1] == "device=all"
    assert podman_argv[podman_argv.index("--device") + 1] == "nvidia.com/gpu=all"
    assert [a for a in docker_argv if a not in ("--gpus", "device=all")] == [
        a for a in podman_argv if a not in ("--device", "nvidia.com/gpu=all")
    ]


def test_apptainer_line_binds_and_leaves_limits_to_slurm() -> None:
    argv = _argv(run_command(RUNTIMES["apptainer"], spec(resources=Resources(1, 2000, 64, 1)), {}))
    assert argv == [
        "exec", "--containall", "--cleanenv", "--pwd", "/",
        "--bind", "/sb/key-j-1/incoming:/share/incoming:ro", "--bind", "/sb/key-j-1/outgoing:/share/outgoing",
        "--env", "A=1", "--nv",
        "--", "docker-daemon:localhost/pfcon-busybox:1", "pl-copy", "/share/incoming", "/share/outgoing",
    ]  # fmt: skip
    assert RUNTIMES["apptainer"].unsupported(spec(user="1:1"))
    assert RUNTIMES["apptainer"].unsupported(spec(shm_size_mib=8))
    assert RUNTIMES["docker"].unsupported(spec(resources=Resources(1, 1000, 4, 0)))
    assert RUNTIMES["docker"].unsupported(spec()) is None


def test_rendered_script_is_valid_bash_for_every_runtime() -> None:
    for name in RUNTIMES:
        script = render(spec(env={"X": "a'b"}), runtime=name, time_limit_minutes=5)
        check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)
        assert not re.search(r"\{\{\w+\}\}", script)  # every placeholder filled ({{.Go}} formats stay)


# -- template ------------------------------------------------------------------------------
def test_site_template_replaces_pfcon_s(tmp_path: Path) -> None:
    path = tmp_path / "site.sh"
    path.write_text("#!/bin/bash\n{{directives}}\nmodule load site-docker\ncd {{job_dir}}\n{{run}}\n")
    template = ScriptTemplate.from_file(path, "SLURM_SCRIPT_TEMPLATE")
    script = render(spec(), template=template)
    assert script.splitlines()[-2:][0] == "cd /nodes/sb/key-j-1/slurm"
    assert "module load site-docker" in script and "#SBATCH --mem=300M" in script


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#!/bin/bash\n{{directives}}\n{{job_dir}}\n{{run}}\n{{secret}}\n", "unknown placeholders"),
        ("#!/bin/bash\n{{directives}}\n{{job_dir}}\n", "{{run}}"),
        ("{{directives}}\n{{job_dir}}\n{{run}}\n", "#!"),
    ],
)
def test_bad_site_template_stops_the_service(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.sh"
    path.write_text(text)
    with pytest.raises(SettingsError, match="SLURM_SCRIPT_TEMPLATE") as error:
        build_slurm_backend(load_settings({**BASE, "SLURM_SCRIPT_TEMPLATE": str(path)}))
    assert problem in str(error.value)


def _pfcon(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TIMELIMIT"))}
    return subprocess.run(
        [sys.executable, "-c", "from pfcon.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
    )


def test_pfcon_slurm_script_prints_the_template_in_use(tmp_path: Path) -> None:
    shipped = _pfcon("slurm-script")
    assert shipped.returncode == 0 and shipped.stdout == ScriptTemplate.packaged("slurm-job.sh").text
    site = tmp_path / "site.sh"
    site.write_text("#!/bin/sh\n{{directives}}\n{{job_dir}}\n{{run}}\n")
    assert _pfcon("slurm-script", SLURM_SCRIPT_TEMPLATE=str(site)).stdout == site.read_text()
    example = _pfcon("slurm-script", "--example", TIMELIMIT_MINUTES="45", STOREBASE="/data/sb")
    assert "#SBATCH --time=45" in example.stdout and "/data/sb/key-example-1/incoming" in example.stdout
    bad = _pfcon("slurm-script", SLURM_RUNTIME="lxc")
    assert bad.returncode == 2 and "SLURM_RUNTIME" in bad.stderr


# -- parsers and the state table -----------------------------------------------------------
def test_parsers() -> None:
    assert parse_job_id("123\n") == "123" and parse_job_id("77;cluster2\n") == "77"
    assert parse_job_id("sbatch: error\n") is None and parse_job_id("") is None
    assert parse_state("PENDING|Resources\n") == QueueState("PENDING", "Resources")
    assert parse_state("RUNNING|None\n") == QueueState("RUNNING", "")
    assert parse_state("\n") is None
    assert parse_accounting("CANCELLED by 0|0:15|None\n") == QueueState("CANCELLED", "")
    assert parse_accounting("NODE_FAIL|1:0|NodeDown\n") == QueueState("NODE_FAIL", "NodeDown")
    assert parse_ping("Slurmctld(primary) at vm is UP\n") and not parse_ping(
        "Slurmctld(primary) at vm is DOWN"
    )


def test_every_slurm_state_has_one_status_and_unknown_is_undefined() -> None:
    record = {"job_id": "9", "time_limit_minutes": 5}
    for state, (status, _) in STATES.items():
        assert from_table(SLURM, record, QueueState(state))[0] is status
    assert from_table(SLURM, record, QueueState("WEIRD"))[0] is JobStatus.undefined
    assert STATES["TIMEOUT"][0] is JobStatus.finishedWithError
    assert "time limit of 5 minutes" in from_table(SLURM, record, QueueState("TIMEOUT"))[1]
    assert from_table(SLURM, record, QueueState("NODE_FAIL"))[1].startswith("node failure")


def test_stop_reason_without_slurm_falls_back_to_the_clock() -> None:
    record = {"job_id": "9", "time_limit_minutes": 1}
    status = {"exit_code": "137", "signal": "TERM", "finished_at": "2026-01-01T00:01:30Z"}
    started = {"started_at": "2026-01-01T00:00:00Z"}
    assert decide(SLURM, record, None, status, started)[1].startswith("timeout")
    early = {**status, "finished_at": "2026-01-01T00:00:10Z"}
    assert decide(SLURM, record, None, early, started)[1].startswith("stopped by SIGTERM")
    running = QueueState("COMPLETING")
    assert decide(SLURM, record, running, status, started)[0] is JobStatus.started


def test_exit_outcomes() -> None:
    assert exit_outcome({"exit_code": "0", "oom": "false"}, 64) == (JobStatus.finishedSuccessfully, "exited")
    assert exit_outcome({"exit_code": "2"}, 64) == (JobStatus.finishedWithError, "exited with code 2")
    status, message = exit_outcome({"exit_code": "137", "oom": "true"}, 64)
    assert status is JobStatus.finishedWithError and message.endswith("memory limit of 64 MiB")


def test_hostile_image_and_args_stay_literal_in_the_script(tmp_path: Path) -> None:
    """Client-given words never run: the script's lines, executed, only print them back."""
    marker = tmp_path / "pwned"
    hostile = f'x$(touch {marker})"`touch {marker}`'
    job = spec(image=hostile, command=("sh", "-c", f"echo '$(touch {marker})'"), env={"E": hostile})
    script = render(job, template=None)
    note = next(line for line in script.splitlines() if line.startswith("note starting"))
    run = next(line for line in script.splitlines() if line.startswith("docker run"))
    shell = f'note() {{ printf "%s\\n" "$*"; }}\n{note}\nprintf "%s\\0" {run.split(" ", 1)[1].rstrip(" &")}'
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"starting {hostile}\n")
    argv = out.split("\n", 1)[1].split("\0")
    assert hostile in argv and f"E={hostile}" in argv and f"echo '$(touch {marker})'" in argv
    assert not marker.exists()


@pytest.mark.parametrize(
    ("inspected", "expected"),
    [("137 false 16777216", "137 likely"), ("137 false 0", "137 false"), ("0 false 16777216", "0 false")],
)
def test_podman_status_calls_a_sigkill_under_a_limit_a_likely_oom(inspected: str, expected: str) -> None:
    """Podman never sets OOMKilled here; its status line says 'likely' for SIGKILL under a limit."""
    status = re.sub(r"podman inspect .*?\"\$container\"", f"echo {inspected}", RUNTIMES["podman"].status)
    result = subprocess.run(["bash", "-c", f"container=x; {status}"], capture_output=True, text=True)
    assert result.stdout.strip() == expected

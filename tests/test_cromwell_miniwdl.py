"""Every WDL document the Cromwell backend generates, run for real by miniwdl in Podman.

No Cromwell server can run here (its jar is in no reachable registry), so this is the closest
to real: miniwdl (a WDL 1.0 engine) runs the document exactly as the backend renders it, in
real containers of the shared Podman, and the job's argv, environment, output files and exit
status are checked — hostile values must arrive literally.

What a Cromwell backend configuration does with the runtime attributes, miniwdl does not:
it ignores ``incoming_dir``/``outgoing_dir`` (and reports them as unknown keys). A ``podman``
wrapper stands in for that configuration: it binds those two folders at /share/incoming
(read-only) and /share/outgoing, and treats an image that is already present as pulled (no
registry is reachable). The busybox job image has no bash, so miniwdl's command shell is sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfcon.compute.base import JobSpec, Mount, Resources
from pfcon.compute.cromwell import wdl
from tests.helpers import TEST_IMAGE
from tests.test_cromwell_wdl import HOSTILE

pytestmark = pytest.mark.integration

MINIWDL = str(Path(sys.executable).with_name("miniwdl"))
PODMAN_WRAPPER = """#!/bin/sh
# miniwdl's podman, standing in for a Cromwell backend configuration (see the module doc)
if [ "$1" = pull ] && podman image exists "$2"; then exit 0; fi
if [ "$1" = run ]; then
  shift
  exec podman run --label "$PFCON_TEST_LABEL" \
    -v "$PFCON_INCOMING:/share/incoming:ro" -v "$PFCON_OUTGOING:/share/outgoing" "$@"
fi
exec podman "$@"
"""


@pytest.fixture(scope="module")
def podman_wrapper(podman_client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("miniwdl") / "podman"
    path.write_text(PODMAN_WRAPPER)
    path.chmod(0o755)
    return path


def job(tmp_path: Path, command: tuple[str, ...], **overrides) -> JobSpec:
    """A job on the test image whose mounts are real folders (outgoing writable by anyone)."""
    incoming, outgoing = tmp_path / "key-j/incoming", tmp_path / "key-j/outgoing"
    incoming.mkdir(parents=True, exist_ok=True)
    outgoing.mkdir(exist_ok=True)
    fields = {
        "jid": "chris-jid-1",
        "image": TEST_IMAGE,
        "command": command,
        "env": {"GREETING": "hi"},
        "resources": Resources(number_of_workers=1, cpu_millicores=1000, memory_mib=200, gpus=0),
        "mounts": (
            Mount(str(incoming), "/share/incoming", read_only=True),
            Mount(str(outgoing), "/share/outgoing", read_only=False),
        ),
    }
    fields.update(overrides)
    return JobSpec(**fields)


def miniwdl_run(
    spec: JobSpec, tmp_path: Path, wrapper: Path, options: wdl.RuntimeOptions | None = None
) -> subprocess.CompletedProcess[str]:
    """``miniwdl run`` of the backend's document for ``spec``, in Podman."""
    source = tmp_path / "job.wdl"
    source.write_text(wdl.render(spec, options or wdl.RuntimeOptions()))
    mounts = {m.target: m.source for m in spec.mounts}
    env = {
        **os.environ,
        "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "podman",
        "MINIWDL__PODMAN__EXE": json.dumps([str(wrapper)]),
        "MINIWDL__TASK_RUNTIME__COMMAND_SHELL": "/bin/sh",
        "MINIWDL__CALL_CACHE__GET": "false",
        "MINIWDL__CALL_CACHE__PUT": "false",
        "PFCON_INCOMING": mounts["/share/incoming"],
        "PFCON_OUTGOING": mounts["/share/outgoing"],
        "PFCON_TEST_LABEL": "pfcon.test=miniwdl",
    }
    command = [MINIWDL, "run", str(source), "--dir", f"{tmp_path / 'run'}/.", "--error-json", "--no-color"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def task_file(tmp_path: Path, name: str) -> str:
    return (tmp_path / "run/call-plugin_instance" / name).read_text()


# Each variation of the document the backend renders: resources, timelimit, env, mounts.
SHAPES = {
    "plain": {},
    "gpu": {"resources": Resources(number_of_workers=1, cpu_millicores=2500, memory_mib=512, gpus=2)},
    "workers": {"resources": Resources(number_of_workers=8, cpu_millicores=1000, memory_mib=200, gpus=0)},
    "no-limits": {"resources": Resources(number_of_workers=1, cpu_millicores=None, memory_mib=None, gpus=0)},
    "no-env": {"env": {}},
}


@pytest.mark.parametrize("timelimit", [None, 90])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_job_runs_and_writes_its_output(
    shape: str, timelimit: int | None, podman_wrapper: Path, tmp_path: Path
) -> None:
    copy = ("pl-copy", "--prefix", "out-", "/share/incoming", "/share/outgoing")
    spec = job(tmp_path, copy, **SHAPES[shape])
    (tmp_path / "key-j/incoming/data.txt").write_text("input data")
    result = miniwdl_run(spec, tmp_path, podman_wrapper, wdl.RuntimeOptions(timelimit_minutes=timelimit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "key-j/outgoing/out-data.txt").read_text() == "input data"
    assert "pl-copy: done" in task_file(tmp_path, "stdout.txt")


def test_a_failing_job_fails_the_workflow_with_its_exit_status(podman_wrapper: Path, tmp_path: Path) -> None:
    spec = job(tmp_path, ("sh", "-c", "echo about to fail; exit 3"))
    result = miniwdl_run(spec, tmp_path, podman_wrapper)
    assert result.returncode != 0
    error = json.loads(result.stdout)
    assert error["error"] == "RunFailed" and error["cause"]["error"] == "CommandFailed"
    assert error["cause"]["exit_status"] == 3
    assert "about to fail" in task_file(tmp_path, "stdout.txt")


def test_hostile_arguments_arrive_literally(podman_wrapper: Path, tmp_path: Path) -> None:
    """Each argument written NUL-terminated into the output folder by the job itself."""
    script = 'for a in "$@"; do printf "%s\\0" "$a"; done > /share/outgoing/argv'
    spec = job(tmp_path, ("sh", "-c", script, "sh", *HOSTILE), env={})
    result = miniwdl_run(spec, tmp_path, podman_wrapper)
    assert result.returncode == 0, result.stdout + result.stderr
    argv = (tmp_path / "key-j/outgoing/argv").read_bytes().decode().split("\0")[:-1]
    assert argv == HOSTILE
    assert not Path("/tmp/pwned").exists()


def test_hostile_env_values_arrive_literally(podman_wrapper: Path, tmp_path: Path) -> None:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}
    script = 'for n in "$@"; do eval "v=\\$$n"; printf %s "$v" > "/share/outgoing/$n"; done'
    spec = job(tmp_path, ("sh", "-c", script, "sh", *env), env=env)
    result = miniwdl_run(spec, tmp_path, podman_wrapper)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {name: (tmp_path / "key-j/outgoing" / name).read_bytes().decode() for name in env}
    assert seen == env


def test_the_input_is_read_only_in_the_job(podman_wrapper: Path, tmp_path: Path) -> None:
    spec = job(tmp_path, ("touch", "/share/incoming/x"))
    result = miniwdl_run(spec, tmp_path, podman_wrapper)
    assert result.returncode != 0
    assert not (tmp_path / "key-j/incoming/x").exists()

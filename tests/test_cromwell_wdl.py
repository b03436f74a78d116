"""The WDL we generate: valid for ``miniwdl check``, and every value escaped.

Each document is checked by the ``miniwdl check --strict`` command (syntax, types and lint;
only ``UnknownRuntimeKey`` is suppressed, because gpu_limit, number_of_workers, timelimit and
the mount attributes are Cromwell backend-configuration attributes, not WDL-spec keys), then
evaluated with miniwdl's own evaluator: the command line and the runtime values must come
back exactly as given, and running that command line in a real shell must give the job the
exact argv and environment we asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import WDL

from pfcon.compute.base import JobSpec, Mount, Resources
from pfcon.compute.cromwell import wdl
from pfcon.errors import InvalidJob
from tests.cromwell_server import evaluate

MINIWDL = str(Path(sys.executable).with_name("miniwdl"))
MOUNTS = (
    Mount("/sb/key-j/incoming", "/share/incoming", read_only=True),
    Mount("/sb/key-j/outgoing", "/share/outgoing", read_only=False),
)
#: values that would break out of a naive template: quotes, placeholders, the command
#: section's end, backslashes, newlines, control characters, shell syntax, non-ASCII
HOSTILE = [
    'a"b',
    "it's",
    "${HOME}",
    "~{cmdline}",
    "$(touch /tmp/pwned)",
    "`id`",
    ">>>",
    "}\n}\nworkflow X {",
    "back\\slash\\",
    '\\"',
    "\\044",
    "tab\there",
    "line1\nline2\r\n",
    "bell\x07 del\x7f esc\x1b",
    "; rm -rf / #",
    "*",
    "",
    " leading and trailing ",
    "ünïcödé ✓ 𝄞",
]


def spec(**overrides) -> JobSpec:
    fields = {
        "jid": "chris-jid-1",
        "image": "fnndsc/pl-simpledsapp:2.1.0",
        "command": ("simpledsapp", "--prefix", "le", "/share/incoming", "/share/outgoing"),
        "env": {"GREETING": "hi"},
        "resources": Resources(number_of_workers=1, cpu_millicores=1000, memory_mib=200, gpus=0),
        "mounts": MOUNTS,
    }
    fields.update(overrides)
    return JobSpec(**fields)


def miniwdl_check(tmp_path: Path, source: str) -> None:
    path = tmp_path / "job.wdl"
    path.write_text(source)
    result = subprocess.run(
        [MINIWDL, "check", "--strict", "--suppress", "UnknownRuntimeKey", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_in_shell(command_line: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the evaluated command line as Cromwell's script would: in bash, in the job's folder."""
    return subprocess.run(["bash", "-c", command_line], capture_output=True, text=True, cwd=tmp_path)


def argv_probe(args: tuple[str, ...]) -> tuple[str, ...]:
    """A command printing its argv as JSON, so the shell's parsing of our quoting is visible."""
    return (sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args)


SPECS = {
    "plain": spec(),
    "gpu": spec(resources=Resources(number_of_workers=1, cpu_millicores=2500, memory_mib=4096, gpus=2)),
    "workers": spec(resources=Resources(number_of_workers=8, cpu_millicores=1000, memory_mib=200, gpus=0)),
    "no-limits": spec(resources=Resources(number_of_workers=1, cpu_millicores=None, memory_mib=None, gpus=0)),
    "no-env": spec(env={}),
    "hostile-args": spec(command=("echo", *HOSTILE)),
    "hostile-env": spec(env={f"V{i}": value for i, value in enumerate(HOSTILE)}),
    "hostile-image": spec(image='img"\n}\nworkflow W { ~{x} ${y} >>> \\'),
    "fslink-mounts": spec(
        mounts=(
            Mount("/sb/key-j/incoming", "/share/incoming", read_only=True),
            Mount("/sb/home/chris/feeds/3/out", "/share/outgoing", read_only=False),
        )
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("timelimit", [None, 90])
def test_every_document_passes_miniwdl_check(name: str, timelimit: int | None, tmp_path: Path) -> None:
    miniwdl_check(tmp_path, wdl.render(SPECS[name], wdl.RuntimeOptions(timelimit_minutes=timelimit)))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_values_come_back_exactly_through_miniwdl(name: str) -> None:
    job = SPECS[name]
    options = wdl.RuntimeOptions(timelimit_minutes=45)
    command, runtime = evaluate(wdl.render(job, options))
    assert command == wdl.shell_line(job)
    assert runtime == wdl.runtime_attributes(job, options)
    assert runtime["docker"] == job.image


def test_runtime_attributes_follow_pfcon_5_3() -> None:
    job = spec(resources=Resources(number_of_workers=3, cpu_millicores=1500, memory_mib=1024, gpus=1))
    attributes = wdl.runtime_attributes(job, wdl.RuntimeOptions(timelimit_minutes=30))
    assert attributes == {
        "docker": "fnndsc/pl-simpledsapp:2.1.0",
        "cpu": 2,  # millicores rounded up to whole cores
        "memory": "1024 MiB",
        "gpu_limit": 1,
        "number_of_workers": 3,
        "timelimit": 30,
        "incoming_dir": "/sb/key-j/incoming",
        "outgoing_dir": "/sb/key-j/outgoing",
        "sharedir": "/sb/key-j",
    }
    limitless = spec(resources=Resources(1, None, None, 0), mounts=SPECS["fslink-mounts"].mounts)
    attributes = wdl.runtime_attributes(limitless, wdl.RuntimeOptions())
    assert "cpu" not in attributes and "memory" not in attributes and "timelimit" not in attributes
    assert "sharedir" not in attributes  # the output is not beside the input: no common /share


def test_hostile_arguments_reach_the_program_unchanged(tmp_path: Path) -> None:
    job = spec(command=argv_probe(tuple(HOSTILE)), env={})
    command, _ = evaluate(wdl.render(job, wdl.RuntimeOptions()))
    result = run_in_shell(command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == HOSTILE
    assert not Path("/tmp/pwned").exists()


def test_hostile_env_values_reach_the_program_unchanged(tmp_path: Path) -> None:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}
    probe = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k[1:].isdigit()}))"
    job = spec(command=(sys.executable, "-c", probe), env=env)
    command, _ = evaluate(wdl.render(job, wdl.RuntimeOptions()))
    result = run_in_shell(command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == env


def test_a_hostile_image_stays_one_string() -> None:
    image = SPECS["hostile-image"].image
    source = wdl.render(SPECS["hostile-image"], wdl.RuntimeOptions())
    _, runtime = evaluate(source)
    assert runtime["docker"] == image
    document = WDL.parse_document(source)
    assert document.workflow.name == "ChRISJob" and [t.name for t in document.tasks] == ["plugin_instance"]
    literal = wdl.wdl_string(image)
    assert "\n" not in literal and "~{" not in literal and "${" not in literal
    assert source.count("~{") == 1  # only our own placeholder, in the command section


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "", "X=Y", "ü"])
def test_env_names_a_shell_cannot_set_are_refused(name: str) -> None:
    with pytest.raises(InvalidJob, match="env"):
        wdl.render(spec(env={name: "v"}), wdl.RuntimeOptions())


def test_nul_and_unknown_mounts_are_refused() -> None:
    with pytest.raises(InvalidJob, match="NUL"):
        wdl.render(spec(command=("echo", "a\x00b")), wdl.RuntimeOptions())
    with pytest.raises(InvalidJob, match="/elsewhere"):
        wdl.render(spec(mounts=(Mount("/x", "/elsewhere", read_only=True),)), wdl.RuntimeOptions())

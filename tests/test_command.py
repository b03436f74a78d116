"""The job command is built as pfcon 5.3 builds it."""

from __future__ import annotations

from pfcon.jobs import Submission, build_command, localize_path_args


def _sub(**kw) -> Submission:
    base = dict(
        jid="j", image="i", entrypoint=("python3", "/usr/local/bin/app"), type="ds", auid="a",
        number_of_workers=1, cpu_limit=1000, memory_limit=200, gpu_limit=0,
    )  # fmt: skip
    base.update(kw)
    return Submission(**base)


def test_ds_command_ends_with_input_and_output() -> None:
    cmd = build_command(_sub(args=("--x", "1")))
    assert cmd == ("python3", "/usr/local/bin/app", "--x", "1", "/share/incoming", "/share/outgoing")


def test_fs_and_ts_commands_have_no_input() -> None:
    assert build_command(_sub(type="fs"))[-2:] == ("/usr/local/bin/app", "/share/outgoing")
    assert build_command(_sub(type="ts"))[-1] == "/share/outgoing"


def test_path_flags_are_localised() -> None:
    args = ["--in", "some/chris/path", "--n", "3", "--in2", "x,y", "--in"]
    assert localize_path_args(args, {"--in", "--in2"}, "/share/incoming") == [
        "--in", "/share/incoming", "--n", "3", "--in2", "/share/incoming", "--in",
    ]  # fmt: skip


def test_flag_value_that_looks_like_a_flag_is_replaced_once() -> None:
    assert localize_path_args(["--in", "--in", "v"], {"--in"}, "/I") == ["--in", "/I", "v"]

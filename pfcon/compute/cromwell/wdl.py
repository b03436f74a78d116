"""The WDL 1.0 workflow that runs one pfcon job on Cromwell.

Each job is one workflow ``ChRISJob`` calling one task ``plugin_instance`` (pfcon 5.3's
names, so existing Cromwell backend configurations keep matching). Every value the client
chose — image, arguments, environment values — reaches the document only inside a WDL
string literal written by :func:`wdl_string`, never as raw text:

* the shell line (``export`` lines and the shell-quoted command) is a private ``String``
  declaration, and the command section is the constant ``~{cmdline}``. A placeholder's value
  is inserted once and not parsed again, so nothing in it can end the command section or open
  another placeholder;
* in the literal, backslash and double quote are escaped, ``$`` and ``~`` are written as
  octal escapes (so ``${`` and ``~{`` can never start a placeholder), and control characters
  as octal escapes (so a newline cannot end the line). Octal escapes are in the WDL 1.0 spec
  and read by both Cromwell and miniwdl.

Runtime attributes follow pfcon 5.3: ``docker``, ``cpu``, ``memory``, ``gpu_limit``,
``number_of_workers`` and ``timelimit`` (minutes), plus the mount sources the Cromwell
backend configuration binds at /share/incoming and /share/outgoing (``sharedir`` as in
pfcon 5.3 when both sit in one job folder).
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from dataclasses import dataclass

from pfcon.compute.base import JobSpec
from pfcon.errors import InvalidJob

WORKFLOW_NAME = "ChRISJob"
TASK_NAME = "plugin_instance"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: runtime attribute carrying the engine-side source of each mount target
MOUNT_ATTRIBUTES = {"/share/incoming": "incoming_dir", "/share/outgoing": "outgoing_dir"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\044", "~": "\\176"}


def wdl_string(value: str) -> str:
    """``value`` as a double-quoted WDL 1.0 string literal that evaluates to exactly ``value``."""
    if "\x00" in value:
        raise InvalidJob("a value for Cromwell contains a NUL character")
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def shell_line(spec: JobSpec) -> str:
    """What the task runs: one ``export`` per env variable, then the command, shell-quoted."""
    lines = []
    for name, value in spec.env.items():
        if not ENV_NAME.fullmatch(name):
            raise InvalidJob(f"env: {name!r} is not a shell variable name, which Cromwell jobs need")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(shlex.join(spec.command))
    return "\n".join(lines)


@dataclass(frozen=True)
class RuntimeOptions:
    """Site-wide runtime settings (from pfcon's settings, not from the client)."""

    timelimit_minutes: int | None = None


def runtime_attributes(spec: JobSpec, options: RuntimeOptions) -> dict[str, str | int]:
    """The task's runtime section as Python values (strings are quoted when rendered)."""
    res = spec.resources
    attributes: dict[str, str | int] = {"docker": spec.image}
    if res.cpu_millicores:
        attributes["cpu"] = max(1, math.ceil(res.cpu_millicores / 1000))
    if res.memory_mib:
        attributes["memory"] = f"{res.memory_mib} MiB"
    attributes["gpu_limit"] = res.gpus
    attributes["number_of_workers"] = res.number_of_workers
    if options.timelimit_minutes:
        attributes["timelimit"] = options.timelimit_minutes
    attributes.update(_mount_attributes(spec))
    return attributes


def _mount_attributes(spec: JobSpec) -> dict[str, str]:
    sources: dict[str, str] = {}
    for mount in spec.mounts:
        name = MOUNT_ATTRIBUTES.get(mount.target)
        if name is None:
            raise InvalidJob(f"cromwell jobs cannot mount {mount.target!r}")
        sources[name] = mount.source
    incoming, outgoing = sources.get("incoming_dir"), sources.get("outgoing_dir")
    if incoming and outgoing:
        parent = posixpath.dirname(incoming)
        if (incoming, outgoing) == (posixpath.join(parent, "incoming"), posixpath.join(parent, "outgoing")):
            sources["sharedir"] = parent  # pfcon 5.3's Cromwell configs bind it at /share
    return sources


def render(spec: JobSpec, options: RuntimeOptions) -> str:
    """The whole WDL 1.0 document for ``spec``."""
    runtime = "\n".join(
        f"    {key}: {value if isinstance(value, int) else wdl_string(value)}"
        for key, value in runtime_attributes(spec, options).items()
    )
    return (
        "version 1.0\n\n"
        f"# pfcon job {wdl_string(spec.jid)}\n"
        f"task {TASK_NAME} {{\n"
        f"  String cmdline = {wdl_string(shell_line(spec))}\n"
        "  command <<<\n"
        "    ~{cmdline}\n"
        "  >>>\n"
        "  runtime {\n"
        f"{runtime}\n"
        "  }\n"
        "}\n\n"
        f"workflow {WORKFLOW_NAME} {{\n"
        f"  call {TASK_NAME}\n"
        "}\n"
    )

"""Helpers shared by the tests: zips, job forms, waiting for a status."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEST_IMAGE = "localhost/pfcon-busybox:1"
#: every container a test session makes carries this label, so cleanup never touches another run's
RUN_ID = uuid.uuid4().hex[:12]
TEST_LABELS = {"pfcon.test": RUN_ID}
TEST_LABEL = f"pfcon.test={RUN_ID}"
TERMINAL = {"finishedSuccessfully", "finishedWithError", "undefined"}


def make_zip(files: Mapping[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def declare_entry_size(archive: bytes, name: str, size: int) -> bytes:
    """``archive`` (stored, no zip64) with both sizes in the local header of ``name`` set to
    ``size``: a header that lies about its entry."""
    lying = bytearray(archive)
    header = archive.index(name.encode()) - 30  # the name's first mention is in its local header
    struct.pack_into("<II", lying, header + 18, size, size)
    return bytes(lying)


def job_form(jid: str, **overrides: Any) -> dict[str, Any]:
    """A valid pfcon job form running pl-copy (a ds plugin) from the test image."""
    form: dict[str, Any] = {
        "jid": jid,
        "entrypoint": ["pl-copy"],
        "args": ["--prefix", "out-"],
        "auid": "cube",
        "number_of_workers": "1",
        "cpu_limit": "1000",
        "memory_limit": "200",
        "gpu_limit": "0",
        "image": TEST_IMAGE,
        "type": "ds",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def client_descriptors(prefix: str, **overrides: Any) -> dict[str, Any]:
    """python-pfconclient job descriptors running ``pl-copy --prefix PREFIX`` from the test image."""
    descriptors: dict[str, Any] = {
        "entrypoint": ["pl-copy"],
        "args": ["--prefix", prefix],
        "args_path_flags": [],
        "auid": "cube",
        "number_of_workers": 1,
        "cpu_limit": 1000,
        "memory_limit": 200,
        "gpu_limit": 0,
        "image": TEST_IMAGE,
        "type": "ds",
    }
    descriptors.update(overrides)
    return descriptors


def input_tree(root: Path) -> Path:
    """A small input folder for pfconclient: ``one.txt`` and ``nested/two.txt``."""
    (root / "nested").mkdir(parents=True)
    (root / "one.txt").write_text("one")
    (root / "nested/two.txt").write_text("two")
    return root


def as_user(uid: int, action: Callable[[], int]) -> int:
    """Run ``action`` in a child process as ``uid`` (the tests run as root); its exit code.

    The child's exception, if any, is printed to stderr (the test's captured output).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            code = action()
        except BaseException as error:
            os.write(2, "".join(traceback.format_exception(error)).encode())
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@contextmanager
def shared_tmp_dir() -> Iterator[Path]:
    """A temporary folder another user can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pfcon-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)  # any depth or mode a test left


def doubling_chain(base: str, levels: int) -> dict[str, str]:
    """Folder L<i> holds a file and two links to L<i+1>: a link to L0 asks for 2**levels copies."""
    files = {}
    for level in range(levels + 1):
        files[f"{base}/L{level}/f{level}.txt"] = str(level)
        if level < levels:
            files[f"{base}/L{level}/a.chrislink"] = f"{base}/L{level + 1}"
            files[f"{base}/L{level}/sub/b.chrislink"] = f"{base}/L{level + 1}"
    return files


class EngineSampler:
    """Reads the engine's running test containers every ``interval`` s in a thread while the
    block runs, keeping what :meth:`sample` makes of each reading in :attr:`samples`."""

    def __init__(self, client: Any, interval: float = 0.2) -> None:
        self.client = client
        self.interval = interval
        self.samples: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EngineSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self, running: list[Any]) -> Any:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                running = self.client.containers.list(filters={"label": TEST_LABEL, "status": "running"})
            except Exception:  # a container removed between list and inspect: read again
                continue
            self.samples.append(self.sample(running))

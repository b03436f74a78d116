"""A scripted client that talks to pfcon 6's API the way the ChRIS backend (CUBE 7) does.

It replays the call sequence of PFCON6.md 1.3 with CUBE's encoding: every POST is a form
built by ``requests`` from a dict (lists become repeated keys, an empty list is left out),
the plugin zip travels as a multipart part named ``data_file`` with filename ``data_file``,
``job_output_path`` is appended to the file URL unencoded (as python-pfconclient 4.0 does),
a 401 gets a fresh token and one retry, and each job is polled until a terminal status.
The flags come from the server info once, at registration, as CUBE stores them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

TERMINAL = ("finishedSuccessfully", "finishedWithError", "undefined")


@dataclass
class Call:
    method: str
    path: str
    status: int


@dataclass
class ChrisLike:
    url: str  # ends in /api/v1/
    user: str = "pfcon"
    password: str = "pfcon1234"
    poll_seconds: float = 0.1
    token: str | None = None
    logins: int = 0
    calls: list[Call] = field(default_factory=list)
    innetwork: bool = False
    storage_env: str = ""
    requires_copy_job: bool = False
    requires_upload_job: bool = False

    # -- transport --------------------------------------------------------------------------
    def login(self) -> None:
        answer = requests.post(
            self.url + "auth-token/",
            json={"pfcon_user": self.user, "pfcon_password": self.password},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["token"]
        self.logins += 1

    def token_expired(self) -> bool:
        """Whether the server now refuses the token in hand (without renewing it)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.get(self.url + "pluginjobs/", headers=headers, timeout=30).status_code == 401

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; on 401 a new token and one retry (abstractjobs.py L183-253)."""
        if self.token is None:
            self.login()
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token}"}
            answer = requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
            self.calls.append(Call(method, path.split("?")[0], answer.status_code))
            if answer.status_code != 401 or attempt:
                return answer
            self.login()
        raise AssertionError("unreachable")

    # -- the calls --------------------------------------------------------------------------
    def register(self) -> dict[str, Any]:
        """Compute-resource registration: CUBE indexes these four keys (a KeyError otherwise)."""
        info = self.call("GET", "pluginjobs/").json()
        self.innetwork = info["pfcon_innetwork"]
        self.storage_env = info["storage_env"]
        self.requires_copy_job = info["requires_copy_job"]
        self.requires_upload_job = info["requires_upload_job"]
        return info

    def post(self, kind: str, fields: dict[str, Any], zip_bytes: bytes | None = None) -> dict[str, Any]:
        files = {"data_file": ("data_file", zip_bytes)} if zip_bytes is not None else None
        answer = self.call("POST", f"{kind}jobs/", data=fields, files=files)
        assert answer.status_code == 201, (kind, answer.status_code, answer.text)
        body = answer.json()
        assert {"status", "logs"} <= set(body["compute"]), body
        return body

    def poll(self, kind: str, jid: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.call("GET", f"{kind}jobs/{jid}/")
            assert answer.status_code == 200, (kind, answer.status_code, answer.text)
            compute = answer.json()["compute"]
            assert isinstance(compute["logs"], str)
            if compute["status"] in TERMINAL:
                return compute
            assert time.monotonic() < deadline, f"{kind} job {jid} still {compute['status']}"
            time.sleep(self.poll_seconds)

    # -- one plugin instance, start to end ---------------------------------------------------
    def run(
        self,
        jid: str,
        plugin: dict[str, Any],
        inputs: list[str],
        output_dir: str,
        zip_bytes: bytes | None,
    ) -> dict[str, Any]:
        """Copy -> plugin -> (upload) -> file -> delete -> the four DELETEs; returns what was seen."""
        seen: dict[str, Any] = {}
        limits = {"cpu_limit": 1000, "memory_limit": 300}
        if self.requires_copy_job:
            self.post("copy", {"jid": jid, **limits, "input_dirs": inputs, "output_dir": output_dir})
            seen["copy"] = self.poll("copy", jid)
            assert seen["copy"]["status"] == "finishedSuccessfully", seen["copy"]
        fields = {"jid": jid, **plugin}
        if self.innetwork:
            fields.update(input_dirs=inputs, output_dir=output_dir)
        seen["submitted"] = self.post("plugin", fields, None if self.innetwork else zip_bytes)
        seen["plugin"] = self.poll("plugin", jid)
        if self.requires_upload_job:
            self.post("upload", {"jid": jid, **limits, "job_output_path": output_dir})
            seen["upload"] = self.poll("upload", jid)
            seen["plugin_again"] = self.call("GET", f"pluginjobs/{jid}/").json()["compute"]
        if self.innetwork:  # the path unencoded, as pfconclient 4.0 appends it
            answer = self.call("GET", f"pluginjobs/{jid}/file/?job_output_path={output_dir}")
            assert answer.status_code == 200, answer.text
            seen["files"] = answer.json()
        else:
            answer = self.call("GET", f"pluginjobs/{jid}/file/")
            assert answer.status_code == 200, answer.text
            seen["zip"] = answer.content
        self.post("delete", {"jid": jid})
        seen["delete"] = self.poll("delete", jid)
        self.delete_all(jid)
        return seen

    def delete_all(self, jid: str) -> None:
        """Step 8: each DELETE must answer 204 (CODE12 otherwise)."""
        kinds = [
            *(["copy"] if self.requires_copy_job else []),
            "plugin",
            *(["upload"] if self.requires_upload_job else []),
            "delete",
        ]
        for kind in kinds:
            answer = self.call("DELETE", f"{kind}jobs/{jid}/")
            assert answer.status_code == 204, (kind, answer.status_code, answer.text)


def plugin_fields(jid: str, prefix: str, image: str, **overrides: Any) -> dict[str, Any]:
    """What CUBE sends for a ``ds`` plugin (pl-copy of the test image); empty lists left in."""
    fields: dict[str, Any] = {
        "entrypoint": ["pl-copy"],
        "args": ["--prefix", prefix],
        "args_path_flags": [],
        "auid": "chris+user",
        "number_of_workers": 1,
        "cpu_limit": 1000,
        "memory_limit": 300,
        "gpu_limit": 0,
        "image": image,
        "type": "ds",
        "env": [f"CHRIS_JID={jid}", "CHRIS_PLG_INST_ID=1", "CHRIS_USER_USERNAME=chris+user"],
    }
    fields.update(overrides)
    return fields

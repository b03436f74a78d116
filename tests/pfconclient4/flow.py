"""One plugin instance through python-pfconclient 4.0.0's library, in ChRIS 7's order.

Run by :func:`tests.pfconclient4.run_flow` in a subprocess where ``pfconclient`` is 4.0.0.
Argument: a JSON object (url, jid, plugin descriptors, input_dirs, output_dir, zip_dir).
Prints progress, then one JSON line of what it saw.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile

import pfconclient
from pfconclient.client import Client, JobType


def main(arguments: dict) -> dict:
    assert pfconclient.__file__ and "4.0.0" in pfconclient.__file__, pfconclient.__file__
    url, jid = arguments["url"], arguments["jid"]
    token = Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234")
    client = Client(url, token)
    client.initial_wait = 0.2  # ChRIS polls every 5 s; the library's own 2 s doubling is slow here
    seen: dict = {"info": client.get_server_info()}
    limits = {"cpu_limit": 1000, "memory_limit": 300}
    if client.requires_copy_job:
        copy = {**limits, "input_dirs": arguments["input_dirs"], "output_dir": arguments["output_dir"]}
        seen["copy_submit"] = client.submit_job(JobType.COPY, jid, copy)
        seen["copy"] = client.poll_job_status(JobType.COPY, jid)
    descriptors = dict(arguments["plugin"])
    zip_file = None
    if client.pfcon_innetwork:
        descriptors.update(input_dirs=arguments["input_dirs"], output_dir=arguments["output_dir"])
    else:
        zip_file = Client.create_zip_file(arguments["zip_dir"])
    seen["plugin_submit"] = client.submit_job(JobType.PLUGIN, jid, descriptors, zip_file)
    seen["plugin"] = client.poll_job_status(JobType.PLUGIN, jid)
    if client.requires_upload_job:
        upload = {**limits, "job_output_path": arguments["output_dir"]}
        seen["upload_submit"] = client.submit_job(JobType.UPLOAD, jid, upload)
        seen["upload"] = client.poll_job_status(JobType.UPLOAD, jid)
        seen["plugin_again"] = client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"]
    if client.pfcon_innetwork:
        seen["files"] = client.get_plugin_job_json_data(jid, arguments["output_dir"])
    else:
        with zipfile.ZipFile(io.BytesIO(client.get_plugin_job_zip_data(jid))) as archive:
            seen["files"] = {name: archive.read(name).decode() for name in sorted(archive.namelist())}
    seen["delete_submit"] = client.submit_job(JobType.DELETE, jid, {})
    seen["delete"] = client.poll_job_status(JobType.DELETE, jid)
    kinds = [JobType.COPY] if client.requires_copy_job else []
    kinds += [JobType.PLUGIN, *([JobType.UPLOAD] if client.requires_upload_job else []), JobType.DELETE]
    for kind in kinds:
        client.delete_job(kind, jid)  # raises unless 204
    seen["deleted"] = [kind.value for kind in kinds]
    return seen


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))

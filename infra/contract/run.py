"""Contract fuzzing: schemathesis generates requests for every operation of the served OpenAPI
document, with every check on (`--checks all`: no 5xx; status, content type, headers and body
as the document says; schema-valid requests accepted and invalid ones refused; no use after
delete; ...) and every phase, the stateful one included, which follows the document's links
from a created poll or job to the operations that take its id.

It runs against a dev server of its own, signed in, with real ids for the operations to reach
past their lookups: a public poll for `{id}`, a poll of its own for DELETE, a real job for the
job routes, and a guest's invite token (read from the QR code of a rendered card) for
`GET /v1/invites/{token}` and for a guest's `POST /v1/polls/{id}/votes`.

The few rules JSON Schema cannot state are the only expected refusals of schema-valid data,
named per operation in the config below: a deadline in the future, `max_choices` within the
option count, options distinct ignoring case and surrounding spaces (422), a cursor that is
not one the server gave (400), choices that are not the poll's option ids (422), card jobs for
guest ids that are not on the poll's list (422), a `paper` size for a job that is not print
sheets (422), and an `If-Match` that names another version than the current one (412).

Usage: python3 infra/contract/run.py <path to the tally-dev binary>
"""

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

SEED = "20261128"
MAX_EXAMPLES = "25"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def invite_token(base: str, poll: str, token: str) -> str:
    """One guest's invite token: an invites job for one guest, its ZIP, and the URL in the QR
    code of the card (`zxingcpp` reads it), as a guest's phone would."""
    import zxingcpp
    from PIL import Image

    job = call(f"{base}/v1/polls/{poll}/invites", {"guests": [{"name": "Fuzz"}]}, token)
    for _ in range(300):
        job = get(f"{base}/v1/jobs/{job['id']}", token)
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    if job["status"] != "done":
        raise SystemExit(f"the invites job did not finish: {job}")
    request = urllib.request.Request(
        f"{base}{job['download_url']}", headers={"authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    card = Image.open(io.BytesIO(archive.read(archive.namelist()[0])))
    codes = zxingcpp.read_barcodes(card)
    if not codes:
        raise SystemExit("no QR code on the invite card")
    return codes[0].text.rsplit("/i/", 1)[1]


def schemathesis_config(poll: str, doomed: str, job: str, guest_poll: str, invite: str) -> str:
    """Real ids per operation, and the refusals each operation may give to data its schema
    allows (the rules listed in this file's docstring)."""
    accepted = '["2xx", "3xx", "401", "403", "404", "409", "429"'
    refused = '["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"'
    return f"""[parameters]
"path.id" = "{poll}"

[[operations]]
include-name = "DELETE /v1/polls/{{id}}"
parameters = {{ "path.id" = "{doomed}" }}
checks.positive_data_acceptance.expected-statuses = {accepted}, "412"]

[[operations]]
include-path-regex = "^/v1/jobs/"
parameters = {{ "path.id" = "{job}" }}

[[operations]]
include-name = "GET /v1/invites/{{token}}"
parameters = {{ "path.token" = "{invite}" }}

[[operations]]
include-name = "POST /v1/polls/{{id}}/votes"
parameters = {{ "path.id" = "{guest_poll}" }}
headers = {{ Authorization = "Invite {invite}" }}
checks.positive_data_acceptance.expected-statuses = {accepted}, "422"]

[[operations]]
include-name = "POST /v1/polls"
checks.positive_data_acceptance.expected-statuses = {accepted}, "422"]

[[operations]]
include-name = "PATCH /v1/polls/{{id}}"
checks.positive_data_acceptance.expected-statuses = {accepted}, "412", "422"]
# A stale `If-Match` is refused (412) before the body is read, whatever the body holds.
checks.negative_data_rejection.expected-statuses = {refused}, "412"]

[[operations]]
include-name = "POST /v1/polls/{{id}}/close"
checks.positive_data_acceptance.expected-statuses = {accepted}, "412"]

[[operations]]
include-name = "GET /v1/polls"
checks.positive_data_acceptance.expected-statuses = {accepted}, "400"]

[[operations]]
include-name = "GET /v1/polls/{{id}}/guests"
checks.positive_data_acceptance.expected-statuses = {accepted}, "400"]

[[operations]]
include-name = "POST /v1/polls/{{id}}/cards"
checks.positive_data_acceptance.expected-statuses = {accepted}, "422"]

[[operations]]
include-name = "POST /v1/polls/{{id}}/invites"
checks.positive_data_acceptance.expected-statuses = {accepted}, "422"]

[[operations]]
include-name = "GET /v1/polls/{{id}}/jobs"
checks.positive_data_acceptance.expected-statuses = {accepted}, "400"]
"""


def get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> int:
    binary = sys.argv[1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = dict(
            os.environ,
            TALLY_DATA_DIR=data,
            TALLY_LISTEN=f"127.0.0.1:{port}",
            TALLY_DYNAMODB_LISTEN="127.0.0.1:0",
            TALLY_S3_LISTEN="127.0.0.1:0",
            TALLY_RATE_LIMITS="off",
            RUST_LOG="warn",
        )
        with open(os.path.join(data, "server.log"), "w") as log:
            server = subprocess.Popen([binary], env=env, stdout=log, stderr=log)
        try:
            for _ in range(150):
                try:
                    urllib.request.urlopen(f"{base}/v1/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            user = {"email": "fuzz@example.com", "password": "correct horse battery"}
            call(f"{base}/v1/auth/register", user)
            token = call(f"{base}/v1/auth/login", user)["access_token"]
            new_poll = {"question": "Fuzz?", "options": ["a", "b"]}
            poll = call(f"{base}/v1/polls", new_poll, token)["id"]
            # The DELETE operation gets a poll of its own: once it has deleted the shared one,
            # every other operation on that poll would only see 404s. The job routes get a
            # real job's id, so they are fuzzed past the lookup too.
            doomed = call(f"{base}/v1/polls", new_poll, token)["id"]
            job = call(f"{base}/v1/polls/{poll}/qr", {"format": "png"}, token)["id"]
            guest_poll = call(
                f"{base}/v1/polls", dict(new_poll, visibility="invite"), token
            )["id"]
            invite = invite_token(base, guest_poll, token)
            config = os.path.join(data, "schemathesis.toml")
            with open(config, "w") as f:
                f.write(schemathesis_config(poll, doomed, job, guest_poll, invite))
            return subprocess.call(
                [
                    "schemathesis", "--config-file", config, "run", f"{base}/v1/openapi.json",
                    "-H", f"Authorization: Bearer {token}",
                    "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--checks", "all",
                    "--phases", "examples,coverage,fuzzing,stateful",
                ]
            )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())

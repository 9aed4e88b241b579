"""Contract fuzzing: schemathesis generates requests for every operation of the served OpenAPI
document and checks each answer: no 5xx, and status, content type, headers and body as the
document says. It runs against a dev server of its own, signed in, with one real poll whose id
fills every `{id}` so that calls reach past the 404s.

Not checked: whether every schema-valid request is accepted (`positive_data_acceptance`) and
every invalid one refused (`negative_data_rejection`). Tally's validation is stricter than JSON
Schema can say (distinct options, deadlines in the future, max_choices within the option count),
and the stateful checks would chase the one shared poll id after a generated DELETE removes it.

Usage: python3 infra/contract/run.py <path to the tally-dev binary>
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


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
            config = os.path.join(data, "schemathesis.toml")
            with open(config, "w") as f:
                f.write(
                    f'[parameters]\n"path.id" = "{poll}"\n\n'
                    f'[[operations]]\ninclude-name = "DELETE /v1/polls/{{id}}"\n'
                    f'parameters = {{ "path.id" = "{doomed}" }}\n\n'
                    f'[[operations]]\ninclude-path-regex = "^/v1/jobs/"\n'
                    f'parameters = {{ "path.id" = "{job}" }}\n'
                )
            return subprocess.call(
                [
                    "schemathesis", "--config-file", config, "run", f"{base}/v1/openapi.json",
                    "-H", f"Authorization: Bearer {token}",
                    "--max-examples", "25", "--seed", "20261128", "--checks", CHECKS,
                ]
            )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())

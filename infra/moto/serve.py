"""moto's server with DynamoDB requests serialised: a second implementation of the AWS wire
protocols (DynamoDB, S3, SQS on one port, path-style S3) for cross-checking Tally's adapters.

Why the lock: stock ``moto_server`` handles each request on its own thread with no lock around
its DynamoDB backend. Under concurrent transactions that was measured to break atomicity now and
then (a cancelled transaction leaving an item behind, a conditional counter passing its cap, 500s),
which would make Tally's race tests fail for moto's sake, not Tally's. DynamoDB itself is atomic
per request, so holding one lock per DynamoDB request restores the semantics under test; S3 and
SQS requests are left concurrent.

Usage: ``python3 infra/moto/serve.py [--port N] [--exit-with-stdin]``. Port 0 (the default) picks a free port; the
first line on stdout is ``ready http://127.0.0.1:<port>``, which the test harness waits for.
"""

import argparse
import logging
import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

_DYNAMODB = threading.Lock()


def complete_multipart_root(app):
    """moto 5.2 names the root element of CompleteMultipartUpload's answer
    ``CompleteMultipartUploadResponse``; S3 (and so the AWS SDKs, which check it) uses
    ``CompleteMultipartUploadResult``. Renaming it is the whole fix."""

    def wrapped(environ, start_response):
        is_completion = environ.get("REQUEST_METHOD") == "POST" and "uploadId=" in environ.get(
            "QUERY_STRING", ""
        )
        if not is_completion:
            return app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        body = b"".join(app(environ, capture))
        body = body.replace(b"CompleteMultipartUploadResponse", b"CompleteMultipartUploadResult")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], headers + [("Content-Length", str(len(body)))])
        return [body]

    return wrapped


def serialised(app):
    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return app(environ, start_response)
        with _DYNAMODB:
            # Drain the response while holding the lock: werkzeug would otherwise iterate it
            # after we return, outside the critical section.
            return [b"".join(app(environ, start_response))]

    return wrapped


def forget_spent_iterators() -> None:
    """moto keeps every shard iterator it ever handed out (about 2 KB each, one per
    GetRecords), so a stream poller asking every few milliseconds grows the server by
    gigabytes an hour. The poller uses each iterator once (a failed read gets a fresh one from
    GetShardIterator), so a spent iterator is dropped once its records are read."""
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    original = DynamoDBStreamsBackend.get_records

    def get_records(self, iterator_arn, limit):
        try:
            return original(self, iterator_arn, limit)
        finally:
            self.shard_iterators.pop(iterator_arn, None)

    DynamoDBStreamsBackend.get_records = get_records


def cheap_transaction_rollback() -> None:
    """moto backs up a transaction by deep-copying the whole table once per item it names, so
    a 99-item transaction on a table of a few thousand items (a guest list) copies the table,
    with every stream record it ever made, 99 times. A rolled-back table was then swapped for
    the copy, which also left the stream pollers reading the old table's shard, so they saw
    nothing written afterwards. Measured: the server grew past 8 GB within two minutes of a
    999-guest test.

    Instead, only the items the transaction names are saved (with the length of the table's
    stream) before it runs; if it fails in any way, those items are put back and the stream
    records it made are dropped, as DynamoDB never shows a cancelled transaction on a stream.
    moto's own backup is turned into the identity while this wrapper runs, so its "rollback"
    becomes a no-op and the table and its stream shard stay the same objects."""
    import copy

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items
    active = threading.local()
    deepcopy_table = getattr(Table, "__deepcopy__", None)

    def table_copy(self, memo):
        if getattr(active, "on", False):
            return self
        if deepcopy_table is not None:
            return deepcopy_table(self, memo)
        # Outside a transaction a table is copied as Python would have copied it.
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    Table.__deepcopy__ = table_copy

    def touched(backend, transact_items):
        saved, streams = [], {}
        for entry in transact_items:
            try:
                _, op = next(iter(entry.items()))
                table = backend.get_table(op["TableName"])
                keys = op.get("Key")
                if keys is None:
                    attrs = op["Item"]
                    names = [table.hash_key_attr, table.range_key_attr]
                    keys = {n: attrs[n] for n in names if n is not None}
                hash_key, range_key = backend.get_keys_value(table, keys)
            except Exception:
                # moto refuses such an item itself, before it writes anything.
                continue
            item = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, copy.deepcopy(item)))
            if table.stream_shard is not None:
                streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
        return saved, streams.values()

    def restore(saved, streams):
        for table, hash_key, range_key, item in reversed(saved):
            if range_key is not None:
                if item is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = item
            elif item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        for shard, length in streams:
            del shard.items[length:]

    def transact_write_items(self, transact_items):
        saved, streams = touched(self, transact_items)
        active.on = True
        try:
            return original(self, transact_items)
        except BaseException:
            restore(saved, streams)
            raise
        finally:
            active.on = False

    DynamoDBBackend.transact_write_items = transact_write_items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="exit when stdin closes, so the server dies with the test process that started it",
    )
    args = parser.parse_args()
    if args.exit_with_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    # One access-log line per request would drown the test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    forget_spent_iterators()
    cheap_transaction_rollback()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, complete_multipart_root(serialised(app)), threaded=True)
    print(f"ready http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()

"""moto's server, with DynamoDB's item operations made atomic, as they are on AWS.

moto serves requests on several threads, and evaluates a conditional write's condition and
applies it without a lock: under CPU load, two concurrent conditional writes to one item can
both pass, which real DynamoDB never allows and which hookgate's exactly-once guard (the lease)
relies on. Measured on this kind of machine with three busy CPU hogs: 200 items, each updated by
8 threads at once under `status <> :p OR lease < :now`: 24 items had more than one winner on
`moto_server`, none with this launcher. This wraps the DynamoDB backend's item operations in one
lock, then runs moto's own server.

    python tests/moto_server.py -H 127.0.0.1 -p PORT
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()


def _locked(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_write_item",
    "transact_write_items",
):
    _method = getattr(DynamoDBBackend, _name, None)
    if _method is not None:
        setattr(DynamoDBBackend, _name, _locked(_method))

if __name__ == "__main__":
    sys.exit(main())

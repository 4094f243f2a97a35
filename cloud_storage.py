"""The seed's cloud_storage.py: the coordinator's SQLite store lives in ``p2c2r.cloud.store``."""

from p2c2r.cloud.store import SCHEMA, Store, TaskRow  # noqa: F401

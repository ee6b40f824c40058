"""Persistence of responses behind a small async interface (:class:`Store`)."""

from parley.store.base import InputItemsPage, Store, StoredResponse
from parley.store.sql import SqlStore, open_store

__all__ = ["InputItemsPage", "Store", "StoredResponse", "SqlStore", "open_store"]

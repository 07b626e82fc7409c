"""ADQL over Arrow Flight SQL (the service's `--flight-sql-port`), through ADBC's Flight SQL driver: one connection,
opened at the first query, presenting the token as a Bearer header."""

from __future__ import annotations

import threading

import pyarrow as pa

from .errors import ServiceError, from_flight


class Flight:
    def __init__(self, uri: str, token: str | None, timeout: float):
        self.uri = uri
        self._token = token
        self._timeout = timeout
        self._connection = None
        # A DB-API connection is not for two threads at once.
        self._lock = threading.Lock()

    def _connect(self):
        import adbc_driver_flightsql
        import adbc_driver_flightsql.dbapi as flightsql

        options = adbc_driver_flightsql.DatabaseOptions
        db_kwargs = {
            options.TIMEOUT_QUERY.value: str(self._timeout),
            options.TIMEOUT_FETCH.value: str(self._timeout),
            options.TIMEOUT_UPDATE.value: str(self._timeout),
        }
        if self._token:
            db_kwargs[options.AUTHORIZATION_HEADER.value] = f"Bearer {self._token}"
        # Autocommit: the service is read-only and has no transactions to turn off.
        return flightsql.connect(self.uri, db_kwargs=db_kwargs, autocommit=True)

    def query(self, adql: str) -> pa.Table:
        import adbc_driver_manager

        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                with self._connection.cursor() as cursor:
                    cursor.execute(adql)
                    return cursor.fetch_arrow_table()
            except adbc_driver_manager.Error as e:
                raise from_flight(e, self.uri) from e
            except OSError as e:
                raise ServiceError(None, f"no answer from Flight SQL: {e}", self.uri) from e

    def close(self):
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.close()
                finally:
                    self._connection = None

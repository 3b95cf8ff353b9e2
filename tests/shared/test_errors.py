"""shared.errors.to_status: what a caller is told for each kind of failure."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
import redis.exceptions

from shared.errors import InvalidArgument, to_status

UNAVAILABLE, INTERNAL = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), UNAVAILABLE, "PostgreSQL"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), UNAVAILABLE,
         "PostgreSQL"),
        (asyncpg.AdminShutdownError("terminating connection"), UNAVAILABLE, "PostgreSQL"),
        (asyncpg.TooManyConnectionsError("too many clients"), UNAVAILABLE, "PostgreSQL"),
        (redis.exceptions.ConnectionError("Error 111 connecting"), UNAVAILABLE, "Redis"),
        (redis.exceptions.TimeoutError("Timeout reading"), UNAVAILABLE, "Redis"),
        (ConnectionRefusedError(111, "Connect call failed"), UNAVAILABLE, "unreachable"),
        (asyncpg.QueryCanceledError("statement timeout"), grpc.StatusCode.DEADLINE_EXCEEDED,
         "timed out"),
        # retrying cannot fix these: a refused row, a bug
        (asyncpg.UniqueViolationError("duplicate key"), INTERNAL, "internal error"),
        (FileNotFoundError(2, "No such file"), INTERNAL, "internal error"),
        (InvalidArgument("sku", "is required"), grpc.StatusCode.INVALID_ARGUMENT, "sku"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_each_failure_gets_its_status_and_a_message_without_details(
    error: BaseException, code: grpc.StatusCode, says: str
) -> None:
    got_code, message = to_status(error)
    assert got_code == code and says in message
    if not isinstance(error, InvalidArgument):
        assert str(error) not in message  # the driver's own text never reaches the caller

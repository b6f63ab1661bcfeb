"""The Redis failures that mean "Redis is away" (a 503 naming the cause), not a bug."""

from __future__ import annotations

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: A Cluster that cannot serve the slot yet (starting, or failing a node over) is away too;
#: so is a primary refusing writes for want of replicas (``connection.NoReplicasError``, a
#: ConnectionError).
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    ClusterDownError,
    RedisClusterException,
    TryAgainError,
    OSError,
)

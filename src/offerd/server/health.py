"""The gRPC health service, and the drain that precedes a stop: NOT_SERVING at once, then
the Watch streams ended, so a load balancer takes the server out before its calls stop."""
from __future__ import annotations

from grpc_health.v1 import health, health_pb2

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Health(health.aio.HealthServicer):
    """grpc's health servicer, whose Watch streams also end when the server stops (grpc's
    run until cancelled, which would hold a graceful stop for its whole grace), and which
    answers List."""

    def __init__(self):
        super().__init__()
        self._ended = False

    async def drain(self) -> None:
        """Every service NOT_SERVING from now on, watchers told at once; calls still served."""
        await self.enter_graceful_shutdown()

    async def end_watches(self) -> None:
        """Each Watch stream sends its last status and ends (OK)."""
        self._ended = True
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()

    async def List(self, request, context):
        """Every service's status (grpc's servicer leaves List unimplemented, a sync stub)."""
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in self._server_status.items()})

    async def Watch(self, request, context):
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._ended:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

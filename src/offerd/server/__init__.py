"""The gRPC server (grpc.aio): offerd.v1 services, health, reflection."""

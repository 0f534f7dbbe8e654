"""Generated protobuf and gRPC code for offerd.v1 (made by `make` from protos/, not committed)."""

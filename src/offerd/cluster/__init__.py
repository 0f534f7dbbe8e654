"""A cluster of offerd shards: routing, topology, the shared counter of total caps, the
balancer's configuration and a local cluster for trying it."""

"""offerd: real-time offer decisioning. ODL catalogs compiled to Python, served over gRPC."""

__version__ = "0.1.0"

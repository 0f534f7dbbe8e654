"""The bundled example catalog: a small retailer (web, call center, e-mail)."""
import os

CATALOG = os.path.join(os.path.dirname(__file__), "catalog")

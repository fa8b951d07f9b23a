"""HTTP filter extensions. ``registry.py`` is the one table that names them."""

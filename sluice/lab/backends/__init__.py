"""Stand-ins for the observability products the course's labs run (one package per product, each
with its own ``__main__``, speaking the product's wire API; none imports the data plane)."""

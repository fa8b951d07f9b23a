"""Clusters, hosts, load balancers and connection pools."""

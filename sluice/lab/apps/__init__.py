"""Local stand-ins for the course's container images, also used as test upstreams."""

"""The router: the terminal HTTP filter, its upstream requests and request mirroring."""

"""The route table: virtual hosts, route entries and their matchers, compiled once."""

"""The lab runner: runs the course's docker-compose labs as local processes (see issue 3)."""

"""Local stack, deployment and server configuration for the gateway."""

from pathlib import Path

# The gunicorn settings every way of serving the gateway uses (make run, the live tests, the image).
GUNICORN_CONFIG = Path(__file__).with_name("gunicorn.conf.py")

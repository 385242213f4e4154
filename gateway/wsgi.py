"""The WSGI entry point for gunicorn: `gunicorn gateway.wsgi:app`.  The only import-time construction."""

from gateway.app import create_app

app = create_app()

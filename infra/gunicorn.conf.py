"""gunicorn settings for the gateway: `gunicorn -c infra/gunicorn.conf.py gateway.wsgi:app`.

Used by `make run` (infra/localstack/run.py), the tests' live gateway
(tests/fixtures/live.py) and the container image.  Command-line flags
(--bind, --workers) override what is set here.

Why this worker model (gunicorn's "Design" page, "Choosing a Worker Type"):
- `sync` handles one request per process and assumes a buffering proxy (nginx)
  in front: exposed directly, a client trickling its head or body holds a whole
  worker for as long as it likes, and a handful of them (slowloris) hold all.
- `gevent` would make waiting cheap, but every blocking call must then be
  green: psycopg (libpq), SQLite, Argon2 and the PDF checks run in C or on the
  CPU and would stall every connection of the worker, and monkey-patching
  after boto3, redis and SQLAlchemy are imported is fragile.  It would also be
  a new dependency.
- `gthread` keeps the plain blocking code the application is written for
  (thread-safe clients built once per process, one DB session per request),
  serves keep-alive connections from a selector without a thread, and is the
  base of gateway.serving.GatewayThreadWorker, which also reads request heads
  and small bodies in that selector and puts timeouts and a minimum pace on
  everything a thread reads or writes: slow clients cost a socket, not a thread.
A buffering proxy in front is still welcome in production; nothing here needs one.
"""

import os

# The worker class above; its timeouts (head 10 s, one socket operation 30 s, bodies at least
# 4 KiB/s after 20 s) are constants in gateway/serving.py, next to the code that applies them.
worker_class = "gateway.serving.GatewayThreadWorker"
# Processes: one per core is enough with threads; WEB_CONCURRENCY (gunicorn's own variable) overrides.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Requests in progress per process.  Below the database pool (5 + 10 overflow per process, see
# gateway/db.py) so a thread never waits for a connection; slow clients do not occupy threads.
threads = 8
# Open connections per process, most of them idle or still sending their head (no thread each).
worker_connections = 1000
# Kept-alive idle connections wait in the selector this long for their next request.
keepalive = 5
# With gthread this is the main loop's heartbeat, not a request deadline: a long upload in a
# thread does not trip it, a wedged process does.
timeout = 30
graceful_timeout = 20
# gunicorn's defaults, stated: a request line of 4 KiB, 100 header fields of 8 KiB each (the
# worker refuses any head over 64 KiB before these apply).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

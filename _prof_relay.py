import cProfile, pstats, time, dataclasses
from bench._stack import BenchStack
from bench.routing import create_drafts, submit
from gateway.app import create_app
from gateway.routing import relay
from gateway.routing.dispatch import RecordingDispatcher
from tests.factories import bearer
from tests.fixtures.databases import create_pg_database, drop_pg_database
url = create_pg_database()
try:
  with BenchStack(database_url=url) as stack:
    settings = dataclasses.replace(stack.settings, log_level="WARNING")
    app = create_app(settings); client = app.test_client(); h = bearer(stack.api_key)
    db = app.extensions["gateway"].db
    ids = create_drafts(client, h, 60)
    t=time.perf_counter()
    for i in ids: submit(client, h, i)
    print("submit ms each", (time.perf_counter()-t)*1e3/60)
    d = RecordingDispatcher()
    pr = cProfile.Profile(); t=time.perf_counter(); pr.enable()
    n=0
    while True:
        r = relay.publish_due(db, d, batch=100)
        if not r.done: break
        n += r.done
    pr.disable(); print("rows", n, "relay ms per row", (time.perf_counter()-t)*1e3/n)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
finally:
  drop_pg_database(url)

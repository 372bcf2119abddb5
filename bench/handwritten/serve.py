"""jobs.serve by hand: Serve on the given port and the jobs' own application, left running."""
import json
import sys

from ray import serve

from jobs.serve import ServeConfig, build_app

cfg = ServeConfig(**json.loads(sys.argv[1]))
serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})
serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix, blocking=False)
print(serve.status().applications[cfg.app_name].status)

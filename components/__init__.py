"""The ray-platform program in layers: config, specs, clients, hooks, platform and team (tests/test_layers.py)."""

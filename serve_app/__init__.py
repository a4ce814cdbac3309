"""bandit-serve's Ray Serve layer: config, router, model arms, experiment state, store, CLI.

The application builder is :func:`serve_app.app.build_app`, the ``import_path`` of the configs.
"""

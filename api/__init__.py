"""The HTTP edge: Litestar app factory, controllers, auth, error mapping, and the `taskyard` CLI."""

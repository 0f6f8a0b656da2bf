"""Taskyard's domain: models, Redis keys and Lua, stores, the dispatcher. No HTTP, no environment reads."""

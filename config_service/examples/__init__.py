"""Runnable examples of embedding config_service's cache and RefreshService in another service."""

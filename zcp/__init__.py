"""Shared core of zcp-observability: config, logging, errors and the CloudStack inventory."""

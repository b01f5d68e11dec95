"""Prometheus recording/alerting rules and the Alertmanager configuration, as code."""

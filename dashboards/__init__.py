"""Grafana dashboards as code (grafanalib), built into JSON."""

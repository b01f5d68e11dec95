"""Real daemons for tests and the demo: Prometheus, Alertmanager and a CloudStack API simulator."""

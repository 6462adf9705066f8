"""serviceorders: an event-sourced engine for TMF641 service orders.

The root package (folder runtime/) holds the settings, the composition root (bootstrap),
the schema and the process runtime (serve's supervisor, the HTTP server, the metrics, the
entry point `python -m serviceorders`); each room is a subpackage (docs/architecture.md).
"""

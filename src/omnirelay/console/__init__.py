"""The web console: a browser client of the history, send and operator endpoints."""

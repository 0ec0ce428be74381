"""The streammat service: live pipelines and file jobs behind one HTTP API."""

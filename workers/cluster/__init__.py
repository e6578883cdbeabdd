"""The Celery side of a Surge cluster: the app, thin tasks, and the transfer executor."""

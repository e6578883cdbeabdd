"""The coordinator of a Surge cluster: plan a sync into tasks, dispatch them through Celery,
follow their progress, and the long-lived `surge coordinator` service."""

"""What the coordinator and the Celery workers of a Surge cluster share: the task schema, the
Redis key layout and the connection to Redis (see schema.py)."""

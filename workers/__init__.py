"""Far ends and executors: the agent/server endpoints and the transfer executors they run."""

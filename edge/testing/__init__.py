"""Real components for tests and the demo (a local Mosquitto), never used by the agent in production."""

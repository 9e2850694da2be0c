"""Site-side tools: the device registry and the event verifier."""

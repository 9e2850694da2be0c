"""The gate agent: ports to the other subsystems, the decision core, and the threads that drive it."""

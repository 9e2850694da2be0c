"""`edge demo`: the whole product on one machine, simulators only."""

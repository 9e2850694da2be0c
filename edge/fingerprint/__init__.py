"""EF01 fingerprint sensors: codec, driver, workflows and the simulator."""

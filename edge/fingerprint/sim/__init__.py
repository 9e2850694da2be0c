"""The EF01 module simulator (edge-fpsim)."""

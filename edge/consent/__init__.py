"""Signed consent lists: the format, the authority that issues them, the device ledger that caches
them, and the enforcement that keeps every biometric store within what they allow."""

"""The device's tamper-evident audit log: a hash chain whose head the device key signs."""

"""The gate agent: on-device biometric access control with signed consent and signed results."""

__version__ = "0.1.0"

"""Standalone access rules a gate applies beyond consent: schedules, anti-passback, duress."""

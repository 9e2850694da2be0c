"""Operations: systemd notification and watchdog, structured redacted logs, local metrics."""

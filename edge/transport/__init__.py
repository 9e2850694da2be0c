"""MQTT transport: topic layout, the durable outbox and the background publisher."""

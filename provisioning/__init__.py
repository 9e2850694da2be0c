"""The installer's CLI: identity, trust anchors, profile, broker, self-test, enrolment."""

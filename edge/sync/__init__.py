"""Site-wide template sync: sealed parcels between the gates of one site (see docs/sync.md)."""

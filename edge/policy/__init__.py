"""Access decisions: thresholds, margins, modality fusion and failure back-off."""

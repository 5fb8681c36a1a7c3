"""A corpus of hostile station drops, built programmatically (nothing multi-MB is checked in)."""

"""Facilities of the hospital system: the catalogue requesters choose from and its policy values."""

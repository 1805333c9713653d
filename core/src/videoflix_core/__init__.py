"""The shared contract of Videoflix: models, names, keys and pure decisions used by every component."""

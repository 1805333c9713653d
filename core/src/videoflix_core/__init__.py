"""The shared contract of Videoflix: models, names, keys and pure decisions every component uses."""

"""Training: losses, configuration and resumable training state."""

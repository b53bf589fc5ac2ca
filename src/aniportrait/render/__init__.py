"""Cameras, the frame renderer and video output."""

"""Real-time pose analysis."""

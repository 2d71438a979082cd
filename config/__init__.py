"""Configuration: settings read once from the environment, and the sample sources file."""

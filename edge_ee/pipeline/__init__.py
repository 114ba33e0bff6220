"""The streaming pipeline around the engine: preprocessing and features, the runner loop, telemetry, statistics,
stream hooks (keyword spotting), datasets and data checks."""

"""Device profiles: per-stage latency and energy measured on this device, the accuracy/cost frontier and the
thresholds chosen from it, stored per device and looked up at run time."""

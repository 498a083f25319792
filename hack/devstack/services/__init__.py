"""The programs as real processes: a fleet of config-service processes, chart-rendered pods under podman."""

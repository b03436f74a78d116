"""Engines that speak the Docker API: Docker itself, Podman's compatibility API and Swarm."""

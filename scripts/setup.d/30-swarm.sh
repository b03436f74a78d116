#!/usr/bin/env bash
# Docker Swarm (CONTAINER_ENV=swarm): makes the shared dockerd a single-node swarm manager on
# loopback, only when it is not already part of a swarm (the engine comes from 10-docker.sh).
# Joining a swarm changes nothing for plain containers, so other users of dockerd are unaffected.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# run on its own (scripts/system-setup.sh swarm), the engine may not be up yet
docker info >/dev/null 2>&1 || bash "$PFCON_ROOT/scripts/setup.d/10-docker.sh"
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

case "$(swarm_state)" in
  active) ;;
  pending | locked | error)
    echo "this dockerd's swarm is '$(swarm_state)'; fix it by hand (docker swarm leave --force) and rerun" >&2
    exit 1 ;;
  *)
    echo "making dockerd a single-node swarm manager ..."
    # two sessions may race here: a loser's "already part of a swarm" is fine if the state is active
    init_output="$(docker swarm init --advertise-addr 127.0.0.1 2>&1)" || true
    wait_until 30 "[[ \$(docker info --format '{{.Swarm.LocalNodeState}}') == active ]]" ||
      { echo "docker swarm init did not make this node active: $init_output" >&2; exit 1; } ;;
esac
[[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" == true ]] ||
  { echo "this dockerd is in a swarm but is not a manager; services cannot be created here" >&2; exit 1; }

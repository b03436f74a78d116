#!/usr/bin/env bash
# Start a development pfcon on this machine with embedded defaults:
#   out-of-network zip-file storage in ./storeBase, the local Docker Engine, development
#   credentials (pfcon / pfcon1234), served by gunicorn on 127.0.0.1:30005.
# Installs what it needs: a virtual environment in ./.venv and, on Debian as root, the
# engine from apt when it is missing; builds the example job image locally (no registry).
#
#   ./make.sh [-h] [-i] [-s] [-C] [-N] [-O ENGINE] [-F STORAGE] [-S STOREBASE] [-p PORT] [-b ADDRESS]
#   ./unmake.sh [-D]       # stops it (and removes the jobs it started)
#
#   -O docker|podman|swarm|slurm|kubernetes  CONTAINER_ENV; default docker, or podman when
#                                       Docker is absent and Podman is installed
#   -N                                  in-network (PFCON_INNETWORK=true; storage defaults to swift)
#   -F zipfile|filesystem|fslink|swift|s3  STORAGE_ENV; zipfile is out-of-network, the others
#                                       need -N (swift and s3: the loopback Swift and its S3 API)
#   -S STOREBASE                        the storeBase folder (default ./storeBase)
#   -p PORT, -b ADDRESS                 where it listens (default 127.0.0.1:30005)
#   -C                                  run pfcon's image (built from the Dockerfile, no registry)
#                                       in a container instead of gunicorn from ./.venv
#   -s                                  skip the set-up steps (installing/starting the engine,
#                                       the venv, building images): faster when all is there
#   -i                                  do not attach: return once it answers. Without -i, on a
#                                       terminal, make.sh follows the log (Ctrl-C detaches;
#                                       pfcon keeps running)
# Values the service cannot honour yet are refused by pfcon itself, with its message.
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
fail_usage() {
  echo "make.sh: $1" >&2
  echo "usage: $(sed -n '8p' "$0" | sed 's/^# *//')   (-h explains each)" >&2
  exit 2
}

storebase="$here/storeBase"
port=30005
address=127.0.0.1
container_env=""
innetwork=false
storage_env=""
in_container=no
skip_setup=no
attach=yes
while getopts ":O:NF:S:p:b:Csih" opt; do
  case "$opt" in
    O) container_env="$OPTARG" ;;
    N) innetwork=true ;;
    F) storage_env="$OPTARG" ;;
    S) storebase="$(realpath -m "$OPTARG")" ;;
    p) port="$OPTARG" ;;
    b) address="$OPTARG" ;;
    C) in_container=yes ;;
    s) skip_setup=yes ;;
    i) attach=no ;;
    h) usage; exit 0 ;;
    :) fail_usage "-$OPTARG needs a value" ;;
    *) fail_usage "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
(($# == 0)) || fail_usage "unexpected argument: $1"
# the one-command start: Docker when it is there (or nothing is), else an installed Podman
if [[ -z "$container_env" ]]; then
  container_env=docker
  if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1 && command -v podman >/dev/null; then
    container_env=podman
  fi
fi
case "$container_env" in
  docker | podman | swarm | slurm | kubernetes) ;;
  *) fail_usage "-O must be docker, podman, swarm, slurm or kubernetes, not '$container_env'" ;;
esac
if [[ "$innetwork" == true ]]; then
  storage_env="${storage_env:-swift}"
  case "$storage_env" in
    filesystem | fslink | swift | s3) ;;
    *) fail_usage "-N (in-network) takes -F filesystem, fslink, swift or s3, not '$storage_env'" ;;
  esac
else
  storage_env="${storage_env:-zipfile}"
  [[ "$storage_env" == zipfile ]] ||
    fail_usage "-F $storage_env is an in-network storage: add -N (out-of-network is zipfile)"
fi
[[ "$port" =~ ^[0-9]+$ ]] || fail_usage "-p must be a port number, not '$port'"
[[ -t 0 && -t 1 ]] || attach=no

# PFCON_RUN_DIR: where this instance's PID, log and settings are kept (tests use their own)
run="${PFCON_RUN_DIR:-$here/.run}"
mkdir -p "$run" "$storebase"
running() {
  { [[ -f "$run/pfcon.pid" ]] && kill -0 "$(cat "$run/pfcon.pid")" 2>/dev/null; } ||
    { [[ -f "$run/pfcon.container" ]] &&
      [[ "$(docker inspect --format '{{ .State.Running }}' "$(cat "$run/pfcon.container")" 2>/dev/null)" == true ]]; }
}
if running; then
  echo "pfcon is already running (see $run); ./unmake.sh stops it"
  exit 0
fi

if [[ "$skip_setup" == no ]]; then
  export PFCON_STATE_DIR="$run"
  # Docker for its own jobs, for Swarm, for Slurm's default runtime and for -C; then the parts
  # named after the engine or storage (scripts/setup.d/NN-<name>.sh), when there are any
  [[ "$container_env" == podman && "$in_container" == no ]] || bash scripts/system-setup.sh docker
  [[ "$container_env" == docker ]] || bash scripts/system-setup.sh "$container_env"
  # (s3 is served by the Swift server's S3 API)
  [[ "$storage_env" == zipfile ]] || bash scripts/system-setup.sh "${storage_env/#s3/swift}"
  if [[ "$in_container" == no && ! -x .venv/bin/pfcon ]]; then
    echo "creating the virtual environment in .venv ..."
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e .
  fi
fi

labels="org.chrisproject.pfcon.dev=$run"
echo "$storebase" >"$run/storebase"
rm -f "$run/pfcon.pid" "$run/pfcon.container"
if [[ "$in_container" == yes ]]; then
  image="${PFCON_DEV_IMAGE:-localhost/pfcon:dev}"
  if [[ "$skip_setup" == no ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
    bash scripts/build-image.sh "$image"
  fi
  socket="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  socket="${socket#unix://}"
  # the image runs pfcon as uid 1001: it must own the storeBase it writes
  if [[ "$(stat -c %u "$storebase")" != 1001 ]]; then
    if [[ $(id -u) -eq 0 ]]; then chown 1001:1001 "$storebase"; else
      echo "warning: $storebase is not owned by uid 1001 (pfcon in its image); it may not write there" >&2
    fi
  fi
  name="pfcon-dev-$(printf '%s' "$run" | sha256sum | cut -c1-10)"
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" \
    --label org.chrisproject.role=pfcon --label "$labels" \
    --group-add "$(stat -c %g "$socket")" -v "$socket:/var/run/docker.sock" \
    -v "$storebase:$storebase" -e STOREBASE="$storebase" -e STOREBASE_MOUNT="$storebase" \
    -e APPLICATION_MODE=development -e JOB_LABELS="$labels" \
    -e CONTAINER_ENV="$container_env" -e PFCON_INNETWORK="$innetwork" -e STORAGE_ENV="$storage_env" \
    -p "$address:$port:5005" "$image" >/dev/null
  echo "$name" >"$run/pfcon.container"
  log_command=(docker logs -f "$name")
  alive() { [[ "$(docker inspect --format '{{ .State.Running }}' "$name" 2>/dev/null)" == true ]]; }
  last_log() { docker logs "$name" 2>&1 | reason; }
  where="container $name (image $image)"
else
  export APPLICATION_MODE=development
  export STOREBASE="$storebase" STOREBASE_MOUNT="$storebase"
  export PFCON_BIND="$address:$port"
  export JOB_LABELS="$labels"
  export CONTAINER_ENV="$container_env" PFCON_INNETWORK="$innetwork" STORAGE_ENV="$storage_env"
  setsid .venv/bin/pfcon serve >"$run/pfcon.log" 2>&1 </dev/null &
  echo $! >"$run/pfcon.pid"
  log_command=(tail -f "$run/pfcon.log")
  alive() { kill -0 "$(cat "$run/pfcon.pid")" 2>/dev/null; }
  last_log() { reason <"$run/pfcon.log"; echo "(whole log: $run/pfcon.log)"; }
  where="pid $(cat "$run/pfcon.pid"), log: $run/pfcon.log"
fi

# why it stopped: pfcon's one-line configuration error when there is one, else the log's end
reason() {
  local log
  log="$(cat)"
  grep -m1 "configuration error" <<<"$log" || tail -20 <<<"$log"
}

url="http://$address:$port/api/v1/"
for _ in $(seq 1 150); do
  if curl -fsS "${url}health/" >/dev/null 2>&1; then
    cat <<EOT
pfcon is up at $url  ($where)
  storage:     $storage_env (in-network: $innetwork), storeBase $storebase
  engine:      $container_env
  credentials: pfcon / pfcon1234   (development mode)
  job image:   localhost/pfcon-busybox:1 (runs pl-copy)
Stop it with ./unmake.sh
EOT
    if [[ "$attach" == yes ]]; then
      echo "following its log (Ctrl-C detaches; pfcon keeps running) ..."
      trap 'exit 0' INT
      "${log_command[@]}" || true
    fi
    exit 0
  fi
  if ! alive; then
    echo "pfcon failed to start:" >&2
    last_log >&2
    exit 1
  fi
  sleep 0.2
done
echo "pfcon did not answer within 30 s ($where); ./unmake.sh stops it" >&2
exit 1

# Shared helpers for the scripts under scripts/ (sourced, not run).
PFCON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PFCON_STATE_DIR="${PFCON_STATE_DIR:-/var/lib/pfcon-dev}"
mkdir -p "$PFCON_STATE_DIR"
export PFCON_ROOT PFCON_STATE_DIR
# Daemons started from here inherit the working directory: make it / rather than a checkout
# that may be deleted while they run (slurmstepd then fails to chdir for every job).
cd /

require_root() {  # require_root WHY
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1, and only root can fix that here" >&2
    exit 1
  fi
}

apt_install() {  # apt_install PACKAGE... — installs only when some are given
  (($#)) || return 0
  require_root "missing packages: $*"
  echo "installing $* ..."
  export DEBIAN_FRONTEND=noninteractive
  # One apt at a time: setup scripts may run while another session's apt holds the lock.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

wait_until() {  # wait_until SECONDS COMMAND — polls COMMAND every 0.5 s
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    bash -c "$2" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

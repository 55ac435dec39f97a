# Helpers shared by scripts/bench, demo, fuzz and test. Sourced, not run.

# Installs Debian packages (apt-get, with sudo unless root).
apt_install() {
  echo "$(basename "$0"): installing $*" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$(basename "$0"): $* must be installed (as root: apt-get install $*)" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || return 1
}

# Installs the Debian packages of missing commands, given as command:package.
install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# A free TCP port on the loopback interface.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A scratch directory ($work) and the processes started in it ($pids: add
# each with pids+=($!)); on exit every one is stopped and the directory goes.
start_work() {
  work=$(mktemp -d)
  pids=()
  trap stop_work EXIT
}
stop_work() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# Starts a private redis-server on a free loopback port, without persistence,
# logging to $work/redis-<port>.log; sets $redis_port and $redis_pid. (Not to
# be called as $(start_redis): a subshell would lose the pid.)
start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    >"$work/redis-$redis_port.log" 2>&1 &
  redis_pid=$!
  pids+=($redis_pid)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$(basename "$0"): redis-server on port $redis_port did not start" >&2
  return 1
}

# Waits (up to 10 s) until GET <base url>/readyz answers 200.
wait_ready() {
  for _ in $(seq 200); do curl -sf "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$(basename "$0"): $1 did not become ready" >&2
  return 1
}

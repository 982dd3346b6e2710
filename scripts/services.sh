# Sourced by .ci/run and deploy/quickstart.sh: makes sure RabbitMQ (and, with `ensure_postgres`,
# PostgreSQL) run on this machine, starting them if not.

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port what
  for _ in $(seq 1 120); do
    if port_open "$1" "$2"; then return 0; fi
    sleep 0.5
  done
  echo "error: $3 is not listening on $1:$2 after 60s" >&2
  return 1
}

ensure_rabbitmq() {
  if ! port_open 127.0.0.1 5672; then
    echo "RabbitMQ is not running: starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached
  fi
  wait_port 127.0.0.1 5672 RabbitMQ
  # The port opens before the node has booted; wait until it answers.
  for _ in $(seq 1 120); do rabbitmqctl -q status >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "error: RabbitMQ does not answer rabbitmqctl status" >&2
  return 1
}

ensure_postgres() {
  if ! port_open 127.0.0.1 5432; then
    echo "PostgreSQL is not running: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
  wait_port 127.0.0.1 5432 PostgreSQL
}

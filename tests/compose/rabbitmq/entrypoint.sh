#!/bin/sh
# The official image's start, as far as the compose test needs it: the default user from the
# environment (instead of guest, which may only connect from localhost), then the server in the
# foreground (Debian's wrapper runs it as user rabbitmq, with that user's home and cookie).
set -eu
mkdir -p /etc/rabbitmq
{
  echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
  echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
  echo "loopback_users = none"
  echo "listeners.tcp.default = 5672"
} > /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
exec rabbitmq-server

#!/bin/sh
# WAHA's image starts its server from /entrypoint.sh; so does the stand-in.
exec node /opt/standin/server.mjs

# Sourced (not run): puts the project's pinned Node 24 first on PATH.
TETHER_NODE_VERSION=24.21.0
TETHER_CACHE=${TETHER_CACHE:-$HOME/.cache/tether}
TETHER_NODE_DIR=$TETHER_CACHE/node-v$TETHER_NODE_VERSION
export TETHER_CACHE TETHER_NODE_VERSION TETHER_NODE_DIR
export PATH="$TETHER_NODE_DIR/bin:$PATH"
export npm_config_nodedir="$TETHER_NODE_DIR"

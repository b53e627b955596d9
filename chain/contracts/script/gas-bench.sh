#!/usr/bin/env bash
# Measures real transaction gas of storage proofs on a throw-away anvil chain: one proof per
# transaction and 32 per `submitProofs`, for several segment sizes at tree depth 16 (and a few
# depths at 256-byte segments). Prints a markdown table (the one in GAS.md).
#
# Usage: script/gas-bench.sh [anvil hardfork, default: anvil's own default]
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."

hardfork="${1:-}"
port=$((20000 + RANDOM % 20000))
rpc="http://127.0.0.1:$port"
# anvil's first well-known development account (public test key, funded only on anvil).
key=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80

anvil_args=(--port "$port" --silent --gas-limit 100000000)
[[ -n "$hardfork" ]] && anvil_args+=(--hardfork "$hardfork")
bin/anvil "${anvil_args[@]}" &
anvil_pid=$!
trap 'kill "$anvil_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  bin/cast block-number --rpc-url "$rpc" >/dev/null 2>&1 && break
  sleep 0.2
done

script() {
  bin/forge script script/GasBench.s.sol --rpc-url "$rpc" --private-key "$key" --broadcast --slow "$@" 2>/dev/null
}
field() { sed -n "s/^ *$1 //p"; }

market=$(script --sig "deploy()" | field MARKET)

accepted_topic=$(bin/cast sig-event "ProofAccepted(uint256,uint256,address,uint256)")

# send CALLDATA PROOFS: the gas used by a transaction to the market with that calldata, after
# checking that it succeeded and that all PROOFS proofs were accepted.
send() {
  local hash logs
  hash=$(bin/cast send --rpc-url "$rpc" --private-key "$key" --async "$market" "$1")
  [[ "$(bin/cast receipt --rpc-url "$rpc" "$hash" status)" =~ ^(1|true) ]] || { echo "proof tx failed" >&2; exit 1; }
  logs=$(bin/cast receipt --rpc-url "$rpc" "$hash" logs | grep -o "$accepted_topic" | wc -l)
  [[ "$logs" == "$2" ]] || { echo "expected $2 accepted proofs, got $logs" >&2; exit 1; }
  bin/cast receipt --rpc-url "$rpc" "$hash" gasUsed
}

# Warm-up: the prover's very first reward turns a zero storage word nonzero (20k gas once);
# every later proof sees the steady state measured below.
run() { # seg depth count -> "single batch"
  local out start now single batch=""
  out=$(script --sig "prepare(address,uint256,uint256,uint256)" "$market" "$1" "$2" "$3")
  start=$(bin/cast call --rpc-url "$rpc" "$market" "periodStart(uint256,uint256)(uint256)" "$(field LAST <<<"$out")" 0)
  now=$(bin/cast block-number --rpc-url "$rpc")
  bin/cast rpc --rpc-url "$rpc" anvil_mine $((start - now)) >/dev/null
  single=$(send "$(field SINGLE <<<"$out")" 1)
  [[ "$3" -gt 1 ]] && batch=$(send "$(field BATCH <<<"$out")" $(($3 - 1)))
  echo "$single $batch"
}
first=$(run 32 0 1)

echo "anvil $(bin/anvil --version | head -1 | cut -d' ' -f3), hardfork: ${hardfork:-default}"
echo "first proof of a new prover (32 B segment, depth 0): ${first% } gas"
echo
echo "| segment | depth | single proof tx | batch of 32 tx | per proof in batch |"
echo "|--------:|------:|----------------:|---------------:|-------------------:|"
for case in "32 16" "128 16" "256 16" "512 16" "1024 16" "256 8" "256 12" "256 20" "1024 20"; do
  read -r seg depth <<<"$case"
  result=$(run "$seg" "$depth" 33)
  read -r single batch <<<"$result"
  echo "| $seg B | $depth | $single | $batch | $((batch / 32)) |"
done

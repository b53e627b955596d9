#!/usr/bin/env bash
# The local demo: a throw-away node stores files, loses shards, reads them back intact, repairs,
# serves its status; a provider network stores and repairs; a devnet chain runs a paid storage deal
# with proofs, slashing, repair and rewards; a render verified tile by tile; then benchmarks. Usage: packaging/demo.sh PATH-TO-bigfile-agent
set -euo pipefail
agent=$(realpath "${1:-target/debug/bigfile-agent}")
root=$(pwd)/demo-run
bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
step() { echo; echo "${bold}==> $*${plain}"; }
run() { echo "\$ bigfile-agent ${*}" >&2; "$agent" --config "$root/node/config.toml" "$@"; }

rm -rf "$root"; mkdir -p "$root/files"
step "Initialise a throw-away node in demo-run/node (config, libp2p identity, encrypted chain key)"
echo "demo password" > "$root/password"
"$agent" init --dir "$root/node" --password-file "$root/password" --api 127.0.0.1:7461 \
  --listen /ip4/127.0.0.1/tcp/7462

step "Make three files: a note, 5 MiB and 48 MiB of random bytes"
echo "BigFile keeps this note safe: $(date)" > "$root/files/note.txt"
head -c $((5 << 20)) /dev/urandom > "$root/files/photo.bin"
head -c $((48 << 20)) /dev/urandom > "$root/files/video.bin"
ls -l "$root/files"

step "Store them, erasure-coded (k=4 data + m=2 parity shards per stripe)"
note=$(run store put "$root/files/note.txt")
echo "$note"
photo=$(run store put "$root/files/photo.bin" --data 3 --parity 2)
echo "$photo"
video=$(run store put "$root/files/video.bin")
echo "$video"
run store ls

step "Destroy m=2 shards of the video: corrupt every block of shard 0, delete shard 4"
run store damage "$video" --shard 0
run store damage "$video" --shard 4 --delete
echo "\$ bigfile-agent store verify   (finds the damage, exits 1)"
"$agent" --config "$root/node/config.toml" store verify || echo "(exit code $?: damage found, as expected)"

step "Read the video back: rebuilt from parity, byte-identical, damaged blocks repaired"
run store get "$video" -o "$root/files/video.out"
cmp "$root/files/video.bin" "$root/files/video.out" && echo "video.out is byte-identical to video.bin"
run store verify

step "Run the agent: /status and /metrics on 127.0.0.1:7461, background scrub"
"$agent" --config "$root/node/config.toml" run 2> "$root/agent.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:7461/status >/dev/null 2>&1 && break; sleep 0.1; done
echo "\$ curl http://127.0.0.1:7461/status"
curl -fs http://127.0.0.1:7461/status; echo
echo "\$ curl http://127.0.0.1:7461/metrics | grep bigfile_store"
curl -fs http://127.0.0.1:7461/metrics | grep '^bigfile_store'
kill -TERM $pid; wait $pid && echo "agent stopped cleanly on SIGTERM"
trap - EXIT

step "The network: six provider agents on 127.0.0.1, each joining through the ones before it"
pids=()
declare -a peer_ids
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
boot=()
for i in 1 2 3 4 5 6; do
  dir="$root/provider$i"
  info=$("$agent" init --dir "$dir" --password-file "$root/password" --api "127.0.0.1:76$((10 + i))" \
    --listen "/ip4/127.0.0.1/tcp/75$((10 + i))" "${boot[@]}" --json)
  addr=$(echo "$info" | sed -n 's/.*"\(\/ip4\/127.0.0.1\/tcp\/75[0-9]*\/p2p\/[A-Za-z0-9]*\)".*/\1/p' | head -1)
  boot+=(--bootstrap "$addr")
  peer_ids[$i]=$(echo "$info" | sed -n 's/.*"peer_id": "\([A-Za-z0-9]*\)".*/\1/p')
  # Demo pace: announce every 2 s; holders challenge each other every 2 s and repair after 6 s.
  sed -i -e 's/^announce_interval_secs = 30/announce_interval_secs = 2/' -e 's/^interval_secs = 60/interval_secs = 2/' \
    -e 's/^grace_secs = 600/grace_secs = 6/' "$dir/config.toml"
  "$agent" --config "$dir/config.toml" run 2> "$dir/agent.log" &
  pids+=($!)
  disown  # no "Killed" job notices when the demo kills providers
  echo "provider $i: $addr"
done
for i in 1 2 3 4 5 6; do
  for _ in $(seq 1 300); do
    n=$(curl -fs "http://127.0.0.1:76$((10 + i))/status" 2>/dev/null | sed -n 's/.*"providers":\([0-9]*\).*/\1/p')
    [ "${n:-0}" -ge 6 ] && break; sleep 0.1
  done
done
echo "\$ bigfile-agent peers   (provider 1: connected peers and the signed announcements it verified)"
"$agent" --config "$root/provider1/config.toml" peers

step "A client stores the three files across the providers: k=2 data + m=2 parity, one shard per provider"
"$agent" init --dir "$root/client" --password-file "$root/password" --api 127.0.0.1:7619 "${boot[@]}" >/dev/null
crun() { echo "\$ bigfile-agent client ${*}" >&2; "$agent" --config "$root/client/config.toml" client "$@"; }
ids=()
for f in note.txt photo.bin video.bin; do
  out=$(crun put "$root/files/$f" --data 2 --parity 2)
  echo "$out"
  ids+=("$(echo "$out" | head -1)")
done

step "Kill (SIGKILL) the two providers holding shards 0 and 1 of the video"
victims=$(crun check "${ids[2]}" | sed -n 's/^ *shard *[01] on \([A-Za-z0-9]*\):.*/\1/p')
for v in $victims; do
  for i in 1 2 3 4 5 6; do
    if [ "${peer_ids[$i]}" = "$v" ]; then kill -9 "${pids[$((i - 1))]}"; echo "killed provider $i ($v)"; fi
  done
done

step "Every file comes back intact from the surviving holders"
n=0
for f in note.txt photo.bin video.bin; do
  crun get "${ids[$n]}" -o "$root/files/$f.net"
  cmp "$root/files/$f" "$root/files/$f.net" && echo "$f.net is byte-identical to $f"
  n=$((n + 1))
done

step "Repair: the survivors challenge each other, notice the dead holders after 6 s, and one leased"
echo "    leader per object rebuilds the lost shards on the spare providers"
for id in "${ids[@]}"; do
  for _ in $(seq 1 120); do
    "$agent" --config "$root/client/config.toml" client check "$id" >/dev/null 2>&1 && break
    sleep 0.5
  done
  crun check "$id"
done
echo "from the providers' logs:"
grep -h "repair complete" "$root"/provider*/agent.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-220

step "Stop the providers (SIGTERM)"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
trap - EXIT
echo "all providers stopped"

step "The chain: a local BigFile devnet (anvil, network 2) with the contracts and funded accounts"
cpids=()
chain_cleanup() {
  for p in "${cpids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$agent" devnet down --dir "$root/devnet" >/dev/null 2>&1 || true
}
trap chain_cleanup EXIT
echo "\$ bigfile-agent devnet up --dir demo-run/devnet --providers 5 --period-blocks 10"
"$agent" devnet up --dir "$root/devnet" --providers 5 --period-blocks 10
devnet="$root/devnet/devnet.json"
# wait_log FILE PATTERN SECONDS WHAT: fails the demo when PATTERN does not show up in time.
wait_log() {
  for _ in $(seq 1 $(($3 * 4))); do grep -q "$2" $1 2>/dev/null && return 0; sleep 0.25; done
  echo "demo failed: $4 did not happen within $3 s" >&2; exit 1
}

step "Five provider agents join the chain: each imports its devnet key, stakes 2000 BIG and runs"
boot=()
for i in 1 2 3 4 5; do
  dir="$root/chain$i"
  info=$("$agent" init --dir "$dir" --password-file "$root/password" --api "127.0.0.1:76$((30 + i))" \
    --listen "/ip4/127.0.0.1/tcp/75$((30 + i))" "${boot[@]}" --devnet "$devnet" --account "provider-$i" --json)
  addr=$(echo "$info" | sed -n 's/.*"\(\/ip4\/127.0.0.1\/tcp\/75[0-9]*\/p2p\/[A-Za-z0-9]*\)".*/\1/p' | head -1)
  boot+=(--bootstrap "$addr")
  # Demo pace: poll the chain 4 times a second; holders check each other every 2 s.
  sed -i -e 's/^announce_interval_secs = 30/announce_interval_secs = 2/' -e 's/^interval_secs = 60/interval_secs = 2/' \
    -e 's/^poll_interval_ms = 1000/poll_interval_ms = 250/' -e 's/^confirmations = 2/confirmations = 1/' "$dir/config.toml"
  echo "\$ bigfile-agent register --stake 2000   (provider $i)"
  "$agent" --config "$dir/config.toml" register --stake 2000 | head -2
  "$agent" --config "$dir/config.toml" run 2> "$dir/agent.log" &
  cpids+=($!)
  disown
done
"$agent" init --dir "$root/chainclient" --password-file "$root/password" --api 127.0.0.1:7639 "${boot[@]}" \
  --devnet "$devnet" --account client-1 >/dev/null
for i in 1 2 3 4 5; do
  for _ in $(seq 1 300); do
    n=$(curl -fs "http://127.0.0.1:76$((30 + i))/status" 2>/dev/null | sed -n 's/.*"providers":\([0-9]*\).*/\1/p')
    [ "${n:-0}" -ge 5 ] && break; sleep 0.1
  done
done

step "A client stores a file with a storage deal: k=2 + m=2 slots, 6 periods, 1 BIG per slot and period"
echo "\$ bigfile-agent client put photo.bin --data 2 --parity 2 --periods 6 --price 1"
"$agent" --config "$root/chainclient/config.toml" client put "$root/files/photo.bin" --data 2 --parity 2 \
  --periods 6 --price 1 | tee "$root/deal.txt"
deal_id=$(sed -n 's/.*deal \([0-9]*\) on chain.*/\1/p' "$root/deal.txt")
[ -n "$deal_id" ] || { echo "demo failed: no deal was created" >&2; exit 1; }
wait_log "$root/chain*/agent.log" "slot taken" 60 "a provider taking a slot"
for _ in $(seq 1 240); do [ "$(grep -l 'slot taken' "$root"/chain*/agent.log | wc -l)" -ge 4 ] && break; sleep 0.25; done
echo "slots taken by four providers; waiting for periods 0 and 1 to be proven (10 blocks of 1 s each)"
for _ in $(seq 1 360); do [ "$(grep -h 'storage proofs submitted' "$root"/chain*/agent.log | wc -l)" -ge 8 ] && break; sleep 0.25; done
grep -h "storage proofs submitted" "$root"/chain*/agent.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-150 | head -8
holder=""
for i in 1 2 3 4 5; do
  held=$("$agent" --config "$root/chain$i/config.toml" deals --json)
  if echo "$held" | grep -q '"slot": 0,'; then holder=$i; fi
done
[ -n "$holder" ] || { echo "demo failed: nobody holds slot 0" >&2; exit 1; }
echo "\$ bigfile-agent deals   (provider $holder, holder of slot 0)"
"$agent" --config "$root/chain$holder/config.toml" deals

step "Kill (SIGKILL) provider $holder: it misses its next proof, a fellow holder reports it, it is slashed"
kill -9 "${cpids[$((holder - 1))]}"
wait_log "$root/chain*/agent.log" "a fellow holder missed a period" 60 "the missed period being reported"
grep -h "a fellow holder missed a period" "$root"/chain*/agent.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200 | head -1
echo "\$ bigfile-agent rewards   (provider $holder: stake after the slash)"
"$agent" --config "$root/chain$holder/config.toml" rewards

step "Repair follows the chain: the shard is rebuilt on the provider without a slot, which takes the slot"
wait_log "$root/chain*/agent.log" "repair complete" 60 "the repair of the lost shard"
for _ in $(seq 1 240); do [ "$(grep -l 'slot taken' "$root"/chain*/agent.log | wc -l)" -ge 5 ] && break; sleep 0.25; done
[ "$(grep -l 'slot taken' "$root"/chain*/agent.log | wc -l)" -ge 5 ] || { echo "demo failed: the freed slot was not taken" >&2; exit 1; }
for i in 1 2 3 4 5; do
  [ "$i" = "$holder" ] && continue
  grep -h "slot taken deal=$deal_id slot=0" "$root/chain$i/agent.log" | sed 's/\x1b\[[0-9;]*m//g' |
    cut -c1-160 | sed "s/^/provider $i: /" || true
done

step "Compute market: a client posts a render job; a provider takes it, renders it tile by tile, stores the"
echo "    image as an object and commits its root; two drawn verifiers re-render their tiles and vote; it is paid"
echo "\$ bigfile-agent client render examples/scenes/cornell.json --payment 10 -o demo-run/job-cornell.png"
"$agent" --config "$root/chainclient/config.toml" client render "$root/../examples/scenes/cornell.json" \
  --payment 10 -o "$root/job-cornell.png" 2>&1 | tee "$root/job-render.txt"
render_out=$(sed -n 's/.*(object \(0x[0-9a-f]*\), root.*/\1/p' "$root/job-render.txt")
[ -n "$render_out" ] || { echo "demo failed: the render job did not finish" >&2; exit 1; }
grep -h "compute result checked" "$root"/chain*/agent.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-170 | head -2
if grep -q "check inconclusive" "$root/job-render.txt"; then
  echo "(provider $holder, killed above, was still in the verifier pool and was drawn: its silent seat left the"
  echo " check without a majority, so the market removed it from the pool and drew fresh verifiers)"
fi

step "An inference job on that output object: the shipped model stored on the network, the render upscaled 2x"
echo "\$ bigfile-agent client put examples/models/espcn-x2.safetensors --data 1 --parity 1 --no-deal"
model_id=$("$agent" --config "$root/chainclient/config.toml" client put "$root/../examples/models/espcn-x2.safetensors" \
  --data 1 --parity 1 --no-deal 2>/dev/null | head -1)
echo "$model_id"
echo "\$ bigfile-agent client infer --model $model_id --input $render_out --payment 5 -o demo-run/job-cornell-x2.png"
"$agent" --config "$root/chainclient/config.toml" client infer --model "$model_id" --input "$render_out" \
  --payment 5 -o "$root/job-cornell-x2.png" 2>&1 | tail -2
for i in 1 2 3 4 5; do
  [ "$i" = "$holder" ] && continue
  if "$agent" --config "$root/chain$i/config.toml" jobs list 2>/dev/null | grep -q "provider"; then
    echo "\$ bigfile-agent jobs list   (provider $i)"
    "$agent" --config "$root/chain$i/config.toml" jobs list
  fi
done

step "The deal runs to its end and is finished; the live providers claim their BIG"
wait_log "$root/chain*/agent.log" "deal finished" 120 "the end of the deal"
for i in 1 2 3 4 5; do
  [ "$i" = "$holder" ] && continue
  echo "\$ bigfile-agent rewards claim   (provider $i)"
  "$agent" --config "$root/chain$i/config.toml" rewards claim | head -1 || true
done

step "Balances (BIG): each provider started with 100000 and staked 2000; the client paid the deal and two jobs"
printf "%-10s %-44s %12s %8s %10s\n" account address balance stake claimable
for i in 1 2 3 4 5 client; do
  cfg="$root/chain$i/config.toml"; [ "$i" = client ] && cfg="$root/chainclient/config.toml"
  "$agent" --config "$cfg" rewards --json | tr -d '\n ' |
    sed -n 's/.*"address":"\([^"]*\)","claimable":"\([^"]*\)".*"balance":"\([^"]*\)","stake":"\([^"]*\)".*/\1 \3 \4 \2/p' |
    { read -r a b s c || true; printf "%-10s %-44s %12s %8s %10s\n" "$i" "$a" "$b" "$s" "$c"; }
done
chain_cleanup
trap - EXIT

step "Compute: the devices this machine offers (a GPU if there is one; lavapipe on the CPU always)"
echo "\$ bigfile-agent devices"
"$agent" devices 2>/dev/null

step "Render the example Cornell box, tile by tile, with its commitment (Merkle root of tile digests)"
echo "\$ bigfile-agent compute render examples/scenes/cornell.json -o demo-run/cornell.png"
"$agent" compute render "$root/../examples/scenes/cornell.json" -o "$root/cornell.png" 2>/dev/null
echo "image written to demo-run/cornell.png"

step "A verifier re-renders 4 random tiles and compares them with the result, under the render tolerance"
echo "\$ bigfile-agent compute verify examples/scenes/cornell.json demo-run/cornell.png --tiles 4"
"$agent" compute verify "$root/../examples/scenes/cornell.json" "$root/cornell.png" --tiles 4 2>/dev/null
sed 's/"seed": 7/"seed": 8/' "$root/../examples/scenes/cornell.json" > "$root/cornell-seed8.json"
"$agent" compute render "$root/cornell-seed8.json" -o "$root/cornell-seed8.png" >/dev/null 2>&1
echo "\$ bigfile-agent compute verify examples/scenes/cornell.json demo-run/cornell-seed8.png --tiles 2   (another seed: caught, exit 1)"
if "$agent" compute verify "$root/../examples/scenes/cornell.json" "$root/cornell-seed8.png" --tiles 2 2>/dev/null; then
  echo "a render with another seed passed verification" >&2; exit 1
fi

step "Inference: the shipped super-resolution model upscales the render 2x, tile by tile, with its commitment"
echo "\$ bigfile-agent compute infer --model examples/models/espcn-x2.safetensors --input demo-run/cornell.png -o demo-run/cornell-x2.png"
"$agent" compute infer --model "$root/../examples/models/espcn-x2.safetensors" --input "$root/cornell.png" -o "$root/cornell-x2.png" 2>/dev/null
echo "image written to demo-run/cornell-x2.png"
echo "\$ bigfile-agent compute verify-infer demo-run/cornell-x2.png --model examples/models/espcn-x2.safetensors --input demo-run/cornell.png --tiles 4"
"$agent" compute verify-infer "$root/cornell-x2.png" --model "$root/../examples/models/espcn-x2.safetensors" --input "$root/cornell.png" --tiles 4 2>/dev/null
echo "\$ bigfile-agent compute verify-infer demo-run/cornell-256.png ...   (a direct 256x256 render, not the model's output: caught, exit 1)"
sed 's/"width": 128/"width": 256/; s/"height": 128/"height": 256/' "$root/cornell-seed8.json" > "$root/cornell-256.json"
"$agent" compute render "$root/cornell-256.json" -o "$root/cornell-256.png" >/dev/null 2>&1
if "$agent" compute verify-infer "$root/cornell-256.png" --model "$root/../examples/models/espcn-x2.safetensors" --input "$root/cornell.png" --tiles 2 2>/dev/null; then
  echo "a direct render passed as the model's output" >&2; exit 1
fi

step "Benchmark: every figure a ratio against a raw baseline measured in the same run"
"$agent" bench storage --size "64 MiB" --dir "$root/bench"
"$agent" bench compute --seconds 1 2>/dev/null

step "Done. Everything is in demo-run/ (remove it with: make clean)"

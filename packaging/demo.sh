#!/usr/bin/env bash
# The local demo: a throw-away node stores files, loses shards, reads them back intact, repairs,
# serves its status, and benchmarks itself. Usage: packaging/demo.sh PATH-TO-bigfile-agent
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

step "Benchmark: every figure a ratio against a raw baseline measured in the same run"
"$agent" bench storage --size "64 MiB" --dir "$root/bench"

step "Done. Everything is in demo-run/ (remove it with: make clean)"

#!/usr/bin/env bash
# Builds bigfile-agent with the `cuda` feature (candle's CUDA backend) on a machine that has
# neither a GPU nor a CUDA toolkit, following ../shared/notes/cuda-build.md:
#   1. the CUDA 13.0 toolkit from Python wheels, merged into target/cuda-toolkit/cu13;
#   2. a stub libcuda.so.1 (the driver library, which no wheel ships) so the binary links;
#   3. cargo build --release into its own target dir, target/cuda (the default target/ is
#      left alone);
#   4. where the binary is and what it needs at run time.
# Everything it fetches or writes stays under target/ (git-ignored). Idempotent: a step whose
# result is already there (same pinned versions, same stub) is skipped; cargo itself skips
# what is up to date. Runs under `nice -n 19` so the machine stays usable.
#
# Usage: packaging/cuda-build.sh
# Environment (optional): CUDA_COMPUTE_CAP (default 90: H100/H200), PYTHON (default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
TK="$ROOT/target/cuda-toolkit"  # wheels, merged toolkit, stub
CU13="$TK/cu13"                 # the merged nvidia/cu13 tree: CUDA_ROOT
STUB="$TK/stub"                 # libcuda.so.1 stub
OUT="$ROOT/target/cuda"         # CARGO_TARGET_DIR for this build
PYTHON=${PYTHON:-python3}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# One CUDA line, 13.0.0 (the 13.0 GA release): driver 580 (CUDA 13.0) loads what this nvcc
# emits, and the runtime libraries should be the ones PyTorch's CUDA 13.0 builds depend on (from
# memory, not yet checked on a GPU machine), so those already installed there match what the
# binary was linked against; any 13.0.x cublas/curand/cudart keeps the same sonames anyway.
# Other 13.0.x releases exist (e.g. 13.0.88 / cuBLAS 13.1.0.3 for 13.0 Update 2); a newer line
# (13.1+) would emit PTX that a 580 driver may refuse.
WHEELS=(
  nvidia-cuda-nvcc==13.0.48     # nvcc, ptxas, fatbinary, nvlink
  nvidia-cuda-crt==13.0.48      # nvcc's crt/ headers (host_config.h, ...)
  nvidia-nvvm==13.0.48          # cicc and libdevice, which nvcc runs
  nvidia-cuda-cccl==13.0.50     # libcu++/CUB/Thrust headers the kernels include
  nvidia-cuda-runtime==13.0.48  # cuda_runtime.h, cuda_fp16.h, ..., libcudart.so.13
  nvidia-cuda-nvrtc==13.0.48    # libnvrtc.so.13 (cudarc `nvrtc`)
  nvidia-cublas==13.0.0.19      # libcublas.so.13, libcublasLt.so.13
  nvidia-curand==10.4.0.35      # libcurand.so.10 (the curand of CUDA 13.0)
)

# Every CUDA driver entry point cudarc 0.19's driver API (src/driver/result.rs, safe/*.rs)
# calls, the superset over CUDA versions; the binary references a subset of these. If a newer
# cudarc/candle needs more, the link fails with "undefined reference to `cuXxx'": add the name
# here and rerun (the script prints the missing ones).
CUDA_DRIVER_SYMBOLS=(
  cuCtxCreate_v3 cuCtxCreate_v4 cuCtxDestroy_v2 cuCtxGetCacheConfig cuCtxGetCurrent cuCtxGetLimit
  cuCtxGetStreamPriorityRange cuCtxSetCacheConfig cuCtxSetCurrent cuCtxSetFlags cuCtxSetLimit
  cuCtxSynchronize cuDestroyExternalMemory cuDeviceGet cuDeviceGetAttribute cuDeviceGetCount
  cuDeviceGetDefaultMemPool cuDeviceGetMemPool cuDeviceGetName cuDeviceGetUuid cuDeviceGetUuid_v2
  cuDevicePrimaryCtxRelease_v2 cuDevicePrimaryCtxRetain cuDeviceSetMemPool cuDeviceTotalMem_v2
  cuEventCreate cuEventDestroy_v2 cuEventElapsedTime cuEventElapsedTime_v2 cuEventQuery cuEventRecord
  cuEventSynchronize cuExternalMemoryGetMappedBuffer cuFuncGetAttribute cuFuncSetAttribute
  cuFuncSetCacheConfig cuGraphDestroy cuGraphExecDestroy
  cuGraphInstantiateWithFlags cuGraphLaunch cuGraphUpload cuImportExternalMemory cuInit
  cuLaunchCooperativeKernel cuLaunchHostFunc cuLaunchKernel cuMemAdvise_v2 cuMemAllocAsync
  cuMemAllocFromPoolAsync cuMemAllocManaged cuMemAlloc_v2 cuMemFreeAsync cuMemFreeHost
  cuMemFree_v2 cuMemGetInfo_v2 cuMemHostAlloc cuMemPoolCreate cuMemPoolDestroy
  cuMemPoolGetAttribute cuMemPoolSetAttribute cuMemPoolTrimTo cuMemPrefetchAsync_v2
  cuMemcpyDtoDAsync_v2 cuMemcpyDtoD_v2 cuMemcpyDtoHAsync_v2 cuMemcpyDtoH_v2
  cuMemcpyHtoDAsync_v2 cuMemcpyHtoD_v2 cuMemcpyPeerAsync cuMemsetD8Async cuMemsetD8_v2
  cuModuleGetFunction cuModuleGetGlobal_v2 cuModuleLoad cuModuleLoadData cuModuleUnload
  cuOccupancyAvailableDynamicSMemPerBlock cuOccupancyMaxActiveBlocksPerMultiprocessor
  cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags cuOccupancyMaxActiveClusters
  cuOccupancyMaxPotentialBlockSize cuOccupancyMaxPotentialBlockSizeWithFlags
  cuOccupancyMaxPotentialClusterSize cuProfilerStart cuProfilerStop cuStreamAttachMemAsync
  cuStreamBeginCapture_v2 cuStreamCreate cuStreamCreateWithPriority cuStreamDestroy_v2
  cuStreamEndCapture cuStreamIsCapturing cuStreamSynchronize cuStreamWaitEvent
)
# (cuGetErrorName and cuGetErrorString are in the stub too, written out below.)

step_start=0
step() { step_start=$SECONDS; echo; echo "== $*"; }
step_done() { echo "   ($(( SECONDS - step_start )) s)"; }

for tool in gcc readelf cargo "$PYTHON"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done
"$PYTHON" -m pip --version >/dev/null 2>&1 || { echo "missing: pip for $PYTHON" >&2; exit 1; }
mkdir -p "$TK" "$OUT"

# --- 1. toolkit wheels -----------------------------------------------------------------------
step "1/5 CUDA 13.0 wheels -> $CU13"
# Each wheel into its own folder (pip will not install into a folder that already holds another
# package's nvidia/ tree), via a temporary folder so an interrupted install is redone.
# Downloads and unpacking stay under target/ (no pip cache, TMPDIR here).
mkdir -p "$TK/wheels" "$TK/tmp"
for spec in "${WHEELS[@]}"; do
  dir="$TK/wheels/${spec%%==*}"
  if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$spec" ]; then
    echo "   have $spec"
    continue
  fi
  echo "   installing $spec"
  rm -rf "$dir" "$dir.partial"
  TMPDIR="$TK/tmp" nice -n 19 "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-cache-dir --no-deps --only-binary=:all: --target "$dir.partial" "$spec"
  [ -d "$dir.partial/nvidia/cu13" ] || { echo "$spec has no nvidia/cu13 tree" >&2; exit 1; }
  mv "$dir.partial" "$dir"
  echo "$spec" >"$dir/.installed"
done
# Merge the nvidia/cu13 trees into one CUDA_ROOT (hard links: no second copy on disk). Redone
# from scratch when the pinned set changes.
want_merge=$(printf '%s\n' "${WHEELS[@]}")
if [ "$(cat "$CU13/.merged" 2>/dev/null)" != "$want_merge" ]; then
  echo "   merging into $CU13"
  rm -rf "$CU13"
  mkdir -p "$CU13"
  for spec in "${WHEELS[@]}"; do
    src="$TK/wheels/${spec%%==*}/nvidia/cu13"
    cp -al --remove-destination "$src/." "$CU13/" 2>/dev/null || cp -a --remove-destination "$src/." "$CU13/"
  done
  echo "$want_merge" >"$CU13/.merged"
else
  echo "   merged tree up to date"
fi
# nvcc.profile runs cicc from nvvm/bin, but the 13.0.48 nvvm wheel ships it in bin/.
if [ ! -e "$CU13/nvvm/bin/cicc" ] && [ -e "$CU13/bin/cicc" ]; then
  mkdir -p "$CU13/nvvm/bin"
  ln -s ../../bin/cicc "$CU13/nvvm/bin/cicc"
fi
# The linker wants unversioned names (libcublas.so); the wheels ship only libcublas.so.13 etc.
for lib in "$CU13"/lib/lib*.so.*; do
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
"$CU13/bin/nvcc" --version | tail -2 | sed 's/^/   /'
step_done

# --- 2. stub libcuda.so.1 --------------------------------------------------------------------
step "2/5 stub libcuda.so.1 -> $STUB"
# candle-core 0.11 turns on cudarc's `dynamic-linking`, so the binary links against libcuda.so,
# the driver library, which comes with the NVIDIA driver, not the toolkit. The stub only has to
# carry the soname libcuda.so.1 and define the symbols: at run time the real driver's
# libcuda.so.1 is loaded instead. Every entry point returns CUDA_ERROR_STUB_LIBRARY (34), so
# if the stub is ever loaded, CUDA fails cleanly ("no device") rather than crashing.
mkdir -p "$STUB"
stub_c=$(
  echo "/* Generated by packaging/cuda-build.sh: a link-time stand-in for the NVIDIA driver. */"
  echo "#define STUB_ERR 34 /* CUDA_ERROR_STUB_LIBRARY */"
  echo "static const char stub_msg[] = \"stub libcuda.so.1 (the NVIDIA driver is not loaded)\";"
  echo "int cuGetErrorName(int e, const char **s) { (void)e; if (s) *s = \"CUDA_ERROR_STUB_LIBRARY\"; return 0; }"
  echo "int cuGetErrorString(int e, const char **s) { (void)e; if (s) *s = stub_msg; return 0; }"
  for sym in "${CUDA_DRIVER_SYMBOLS[@]}"; do echo "int $sym(void) { return STUB_ERR; }"; done
)
if [ -f "$STUB/libcuda.so.1" ] && [ "$(cat "$STUB/stub.c" 2>/dev/null)" = "$stub_c" ]; then
  echo "   up to date"
else
  printf '%s\n' "$stub_c" >"$STUB/stub.c"
  gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so.1.tmp" "$STUB/stub.c"
  mv "$STUB/libcuda.so.1.tmp" "$STUB/libcuda.so.1"
  echo "   built ($(( ${#CUDA_DRIVER_SYMBOLS[@]} + 2 )) symbols)"
fi
ln -sfn libcuda.so.1 "$STUB/libcuda.so"
step_done

# --- 3. cargo build --------------------------------------------------------------------------
step "3/5 cargo build --release --features cuda (CARGO_TARGET_DIR=target/cuda, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
# The toolkit's variables all point at the merged tree, so no other CUDA on this machine is mixed
# in: cudarc reads CUDA_HOME/CUDA_PATH/CUDA_ROOT for the link search and nvcc's version; candle's
# kernels build runs the nvcc on PATH for CUDA_COMPUTE_CAP (there is no GPU to ask).
export CUDA_ROOT="$CU13" CUDA_PATH="$CU13" CUDA_HOME="$CU13"
export PATH="$CU13/bin:$PATH"
export LIBRARY_PATH="$CU13/lib:$STUB${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CARGO_TARGET_DIR="$OUT"
log="$OUT/cuda-build.log"
echo "   log: $log"
if ! nice -n 19 cargo build --release --locked -p bigfile-agent --features cuda 2>&1 | tee "$log"; then
  missing=$(grep -oE "undefined reference to \`cu[A-Z][A-Za-z0-9_]*'" "$log" | sed -E "s/.*\`(.*)'/\1/" | sort -u || true)
  if [ -n "$missing" ]; then
    echo "the link needs driver symbols the stub lacks; add them to CUDA_DRIVER_SYMBOLS and rerun:" >&2
    echo "$missing" | sed 's/^/  /' >&2
  fi
  exit 1
fi
step_done

# --- 4. result -------------------------------------------------------------------------------
step "4/5 result"
bin="$OUT/release/bigfile-agent"
echo "   binary: ${bin#"$ROOT"/} ($(stat -c %s "$bin") bytes, $(du -h "$bin" | cut -f1))"
echo "   NEEDED:"
readelf -d "$bin" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/     \1/p'
undef=$(nm -D --undefined-only "$bin" | awk '{print $2}' | grep -E '^cu[A-Z]' | sort -u)
for sym in $undef; do
  case " ${CUDA_DRIVER_SYMBOLS[*]} cuGetErrorName cuGetErrorString " in
    *" $sym "*) ;;
    *) echo "   warning: $sym is not in the stub's list" >&2 ;;
  esac
done
echo "   driver symbols it uses: $(echo "$undef" | wc -w)"
echo "   It starts only where the NVIDIA driver (libcuda.so.1) is installed. On a GPU machine whose"
echo "   python3 has the CUDA 13 pip libraries (nvidia-cublas, nvidia-curand, nvidia-cuda-runtime):"
# shellcheck disable=SC2016 # printed for the user, expanded there
echo '     LD_LIBRARY_PATH=$(python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], \"cu13\", \"lib\"))") ./bigfile-agent devices'
echo "   (or, without such a python: LD_LIBRARY_PATH=<copy of ${CU13#"$ROOT"/}/lib>)"
step_done

# --- 5. carry ------------------------------------------------------------------------------------
# The device tool carries at most 64 MiB: the stripped binary (~82 MB, a third of it GPU kernels)
# is too big, xz brings it to ~14 MB. On the GPU machine: xz -d bigfile-agent-cuda.xz.
step "5/5 stripped and compressed for carrying"
carry="$OUT/bigfile-agent-cuda.xz"
if [ ! -f "$carry" ] || [ "$bin" -nt "$carry" ]; then
  strip -o "$OUT/bigfile-agent-cuda" "$bin"
  xz -6 -T2 -f "$OUT/bigfile-agent-cuda"
fi
echo "   ${carry#"$ROOT"/} ($(du -h "$carry" | cut -f1))"
step_done

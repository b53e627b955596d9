#!/usr/bin/env bash
# The GPU figures of `bench compute` (render GPU vs lavapipe, inference CUDA vs candle CPU) on a
# machine lent by the device tool, which has an NVIDIA driver, CUDA 13 runtime libraries in its
# Python (nvidia-cublas, nvidia-cuda-runtime, nvidia-curand wheels) and no cargo, no Vulkan
# loader and no lavapipe. Three steps, the first here, the other two there:
#
#   here:   packaging/cuda-build.sh               # target/cuda/bigfile-agent-cuda.xz (14 MB)
#           packaging/gpu-check.sh debs           # .gl/: Vulkan/GL loaders and lavapipe (49 MB)
#   there:  packaging/gpu-check.sh unpack         # carry [".gl"]; unpacks them into /
#           packaging/gpu-check.sh bench          # carry ["target/cuda/bigfile-agent-cuda.xz"]
#
# The two device calls are split because both carries together pass the 64 MiB a call may
# carry; run `bench` right after `unpack`, while the machine is still warm (what `unpack` put
# in / stays until the machine is given back). `bench` writes nvidia-smi.txt, devices.json,
# bench-compute.json and bench-compute.log under $OUT (or /tmp/gpu-check).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
debs)
  # Debian bookworm packages (what the CI machine runs lavapipe from); `.gl/` is git-ignored,
  # so it travels only when carried.
  mkdir -p .gl
  (cd .gl && apt-get download \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
    mesa-vulkan-drivers libllvm15 libz3-4 libxml2 libicu72 libedit2 libffi8 libbsd0 libmd0 \
    libdrm-amdgpu1 libdrm2 libelf1 libwayland-client0 libx11-6 libx11-xcb1 libxau6 libxdmcp6 \
    libxcb1 libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 \
    libxcb-xfixes0 libxshmfence1)
  du -sh .gl
  ;;
unpack)
  ls .gl/*.deb >/dev/null 2>&1 || { echo "no .gl/*.deb: run \`$0 debs\` here and carry .gl" >&2; exit 1; }
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  ls /usr/share/vulkan/icd.d/ 2>/dev/null
  echo "unpacked $(ls .gl/*.deb | wc -l) packages"
  ;;
bench)
  out=${OUT:-/tmp/gpu-check}
  mkdir -p "$out"
  xz=target/cuda/bigfile-agent-cuda.xz
  [ -f "$xz" ] || { echo "no $xz: run packaging/cuda-build.sh here and carry it" >&2; exit 1; }
  bin=/tmp/bigfile-agent-cuda
  xz -dc "$xz" >"$bin" && chmod +x "$bin"
  # The CUDA 13 runtime libraries: from the Python wheels there, else (a dry run here) from the
  # toolkit cuda-build.sh assembled, with its stub driver.
  nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
  dirs=""
  for root in ${nv:+"$nv/nvidia"} target/cuda-toolkit/cu13 target/cuda-toolkit/stub; do
    [ -d "$root" ] || continue
    for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcuda.so.1; do
      while IFS= read -r f; do
        d=$(dirname "$f")
        case ":$dirs:" in *":$d:"*) ;; *) dirs="$dirs:$d" ;; esac
      done < <(find "$root" -name "$lib" 2>/dev/null)
    done
    [ -n "$nv" ] && break  # on the GPU machine, never the stub
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The NVIDIA Vulkan driver lives in the driver's own folder there.
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  lvp=$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -1)
  if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd${lvp:+:$lvp}"; fi
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee "$out/env.txt"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}" | tee -a "$out/env.txt"
  ldd "$bin" | grep -E 'cuda|cublas|curand|not found' | tee -a "$out/env.txt"
  (nvidia-smi -L || true) | tee "$out/nvidia-smi.txt"
  "$bin" devices --json | tee "$out/devices.json"
  "$bin" bench compute --json >"$out/bench-compute.json" 2> >(tee "$out/bench-compute.log" >&2)
  rc=$?
  cat "$out/bench-compute.json"
  exit $rc
  ;;
*)
  sed -n '2,15p' "$0"
  exit 2
  ;;
esac

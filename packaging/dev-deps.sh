#!/usr/bin/env bash
# Installs what building and testing need, only what is missing; quiet when all is present.
# Debian: a C compiler (SIMD erasure coding and keccak assembly are built from C and asm) and
# lavapipe, the CPU Vulkan driver.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# A Vulkan adapter on every machine: Mesa's lavapipe (CPU) for the render jobs and their tests.
compgen -G "/usr/share/vulkan/icd.d/lvp_icd.*.json" >/dev/null || need_apt+=(mesa-vulkan-drivers)
compgen -G "/usr/lib/*/libvulkan.so.1" >/dev/null || need_apt+=(libvulkan1)
# And Mesa's EGL/GL (llvmpipe): a second, independent adapter the render tests compare against.
compgen -G "/usr/lib/*/libEGL_mesa.so.0" >/dev/null || need_apt+=(libegl-mesa0 libegl1)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is missing: install it with rustup (https://rustup.rs), Rust 1.88 or newer, then rerun." >&2
  exit 1
fi
rustc_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rustc_minor:-0}" -lt 88 ]; then
  echo "Rust $(rustc --version) is too old: 1.88 or newer is needed (rustup update)." >&2
  exit 1
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "installing the $comp component"
    rustup component add "$comp"
  fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (one-time, a few minutes)"
  cargo install --locked cargo-nextest || echo "cargo-nextest could not be installed; tests will run with cargo test" >&2
fi

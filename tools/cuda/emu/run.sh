#!/usr/bin/env bash
# run.sh — compile kernels/cuda/kernels.cu against the CPU emulation in
# include/ (emu.h, stand-ins for cuda_bf16.h and cuda_fp16.h) and run
# emu_test.cpp: the kernels' logic checked without a GPU. Needs g++ ≥ 11
# (C++20 <barrier>, _Float16).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuda-emu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"${CXX:-g++}" -std=c++20 -O1 -U_FORTIFY_SOURCE -pthread -Wall -Wno-unknown-pragmas -Wno-unused-function \
	-I"$here/include" -include emu.h -o "$tmp/emu_test" "$here/emu_test.cpp"
"$tmp/emu_test"
